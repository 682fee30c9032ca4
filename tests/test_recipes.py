"""Every recipe shipped under recipes/ loads and validates against its stage's schema.

    .venv/bin/python -m pytest tests/test_recipes.py -q

Registry: recipes/data/** -> mathtune.data.DataRecipe; recipes/eval/** -> the eval stage's recipe
schema (`EvalConfig`, looked up on mathtune.eval; the test fails if eval recipes ship without one); every other
recipes/**.yaml -> mathtune.train.TrainRecipe, plus its `trainer:` block through trl.SFTConfig and
its data recipe through DataRecipe (`mathtune train RECIPE --check`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from mathtune.config import load_recipe, read_yaml
from mathtune.errors import MathtuneError
from mathtune.models import CATALOGUE, HUB_ID

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def stage_of(path: Path) -> str:
    rel = path.relative_to(REPO / "recipes").parts
    return rel[0] if len(rel) > 1 and rel[0] in {"data", "eval"} else "train"


def eval_schema():
    mod = importlib.import_module("mathtune.eval")
    for name in ("EvalConfig", "EvalRecipe"):
        if hasattr(mod, name):
            return getattr(mod, name)
    pytest.fail("recipes/eval ships recipes but mathtune.eval exports no EvalConfig schema to validate them")


def validate_train(path: Path) -> None:
    from mathtune.train import TrainRecipe
    from mathtune.train.run import check

    recipe = TrainRecipe.load(path)
    check(recipe)  # trainer block via trl.SFTConfig, data recipe via DataRecipe, prompt style
    name = recipe.model.name
    assert name in CATALOGUE or HUB_ID.fullmatch(name), f"{path.name}: model {name!r} is neither catalogue nor Hub id"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# mathtune train recipes/{path.name}"), f"{path.name} must open with its command"
    assert path.stem == recipe.name, "file name and recipe name agree"


def validate(path: Path) -> None:
    kind = stage_of(path)
    if kind == "data":
        from mathtune.data import DataRecipe

        load_recipe(DataRecipe, path)
    elif kind == "eval":
        load_recipe(eval_schema(), path)
    else:
        validate_train(path)


def test_recipes_are_shipped():
    train = [p for p in RECIPES if stage_of(p) == "train"]
    assert len(train) >= 12
    methods = {read_yaml(p).get("method", {}).get("kind", "lora") for p in train}
    assert {"lora", "qlora", "full"} <= methods
    assert {read_yaml(p).get("stage", "sft") for p in train} == {"sft", "cpt", "grpo", "dpo", "reward"}
    assert sum("smollm2-135m" in p.name for p in train) >= 5  # a CPU-sized variant of each reference recipe


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_validates(path):
    validate(path)


def test_a_broken_trainer_block_is_caught(tmp_path):
    bad = tmp_path / "bad.yaml"
    src = (REPO / "recipes" / "smollm2-135m_lora_synth.yaml").read_text().replace("max_steps: 8", "max_stepz: 8")
    bad.write_text(src.replace("name: smollm2-135m_lora_synth", "name: bad"))
    with pytest.raises(MathtuneError, match="max_steps"):
        validate_train(bad)
