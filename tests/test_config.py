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
