"""Recipe loading: YAML + key=value overrides -> frozen, validated objects; clear errors."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import ValidationError

from mathtune.config import Section, apply_overrides, dump_recipe, load_recipe
from mathtune.errors import MathtuneError


class Lora(Section):
    r: int = 8
    alpha: int = 16
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class Recipe(Section):
    model: str
    method: Literal["lora", "dora", "full"] = "lora"
    lora: Lora = Lora()
    trainer: dict[str, Any] = {}


def write(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_load_with_overrides_and_roundtrip(tmp_path):
    p = write(tmp_path, "model: m\nlora:\n  r: 4\ntrainer:\n  learning_rate: 1.0e-4\n")
    r = load_recipe(Recipe, p, ["lora.alpha=32", "trainer.num_train_epochs=2", "method=dora"])
    assert (r.model, r.method, r.lora.r, r.lora.alpha) == ("m", "dora", 4, 32)
    assert r.trainer == {"learning_rate": 1e-4, "num_train_epochs": 2}
    with pytest.raises(ValidationError):
        r.model = "other"  # frozen
    again = load_recipe(Recipe, write(tmp_path, dump_recipe(r)))
    assert again == r


def test_unknown_key_names_file_key_and_closest(tmp_path):
    p = write(tmp_path, "model: m\nlora:\n  alfa: 32\n")
    with pytest.raises(MathtuneError) as e:
        load_recipe(Recipe, p)
    msg = str(e.value)
    assert str(p) in msg and "'lora.alfa'" in msg and "'lora.alpha'" in msg


def test_unknown_top_level_override(tmp_path):
    with pytest.raises(MathtuneError, match=r"unknown key 'methd'.*did you mean 'method'"):
        load_recipe(Recipe, write(tmp_path, "model: m\n"), ["methd=full"])


def test_bad_value_and_missing_key(tmp_path):
    with pytest.raises(MathtuneError, match=r"invalid value for 'method'"):
        load_recipe(Recipe, write(tmp_path, "model: m\nmethod: qlorra\n"))
    with pytest.raises(MathtuneError, match=r"missing required key 'model'"):
        load_recipe(Recipe, write(tmp_path, "method: lora\n"))


def test_malformed_yaml_reports_line(tmp_path):
    p = write(tmp_path, "model: m\nlora:\n  r: [1, 2\n")
    with pytest.raises(MathtuneError, match=r"malformed YAML .* at line \d+"):
        load_recipe(Recipe, p)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(MathtuneError, match="recipe file not found"):
        load_recipe(Recipe, tmp_path / "nope.yaml")
    with pytest.raises(MathtuneError, match="bad override"):
        apply_overrides({}, ["no-equals-sign"])


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 (PyYAML's default) reads `1e-4` as a string; recipes and overrides read it as a
    number, as YAML 1.2 does (a string learning rate only failed later, inside the optimizer)."""
    from mathtune.config import apply_overrides, read_yaml

    path = tmp_path / "r.yaml"
    path.write_text("lr: 1e-4\nother: 5.0e-6\nsteps: 3\nname: 1e3x\nneg: -2E+2\n")
    assert read_yaml(path) == {"lr": 1e-4, "other": 5e-6, "steps": 3, "name": "1e3x", "neg": -200.0}
    out = apply_overrides({}, ["trainer.learning_rate=5e-05", "a=true", "b=[1, 2]", "c=text"])
    assert out == {"trainer": {"learning_rate": 5e-05}, "a": True, "b": [1, 2], "c": "text"}
    assert isinstance(out["trainer"]["learning_rate"], float)
