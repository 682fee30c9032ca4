"""Dataset builds: the shipped GSM8K + synth recipe offline with planted contamination, mixing,
curriculum, splits, cards, the Python API and the `mathtune data` CLI."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from mathtune.config import load_recipe
from mathtune.data import DataRecipe, SourceSpec, build_dataset, read_split
from mathtune.errors import MathtuneError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "data" / "gsm8k_synth_mix.yaml"

CLEAN = [
    "A baker fills 14 trays with 9 rolls each and sells 37 rolls. How many rolls remain unsold at the bakery?",
    "Find the area of a kite whose diagonals measure 18 centimeters and 11 centimeters.",
    "If $g(t) = 4t^3 - t$, what is the value of $g(2) - g(-1)$?",
    "A cyclist rides 42 kilometres on Saturday and twice as far on Sunday. How far does she ride that weekend?",
]


def _edit(text: str, k: int) -> str:
    """A paraphrase with small edits: one number changed, one word swapped, a short prefix."""
    text = re.sub(r"\d+", lambda m: str(int(m.group()) + 1), text, count=1)
    for old, new in (("How many", "How much"), ("What is", "Find"), ("Find", "Determine"), (" the ", " this "),
                     (" a ", " one ")):
        if old in text:
            text = text.replace(old, new, 1)
            break
    return ["Question: ", "Problem: ", "Try this: "][k % 3] + text


def _plants(benchmarks_dir: Path, tmp_path: Path) -> tuple[Path, set[str], set[str]]:
    gsm = [json.loads(x)["question"] for x in (benchmarks_dir / "gsm8k/test.jsonl").read_text().splitlines()[:400]]
    m500 = [json.loads(x)["problem"] for x in (benchmarks_dir / "math500/test.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    gsm_pick = rng.sample(gsm, 6)
    m500_long = [p for p in m500 if len(p.split()) >= 25]
    m500_pick = rng.sample(m500[:100], 3) + rng.sample(m500_long, 3)
    rows, bad, good = [], set(), set()
    for i, text in enumerate(gsm_pick[:3] + m500_pick[:3]):  # exact copies
        rows.append({"id": f"plant-exact-{i}", "problem": text, "answer": "1"})
    for i, text in enumerate(gsm_pick[3:] + m500_pick[3:]):  # paraphrases with small edits
        rows.append({"id": f"plant-edit-{i}", "problem": _edit(text, i), "answer": "1"})
    bad = {r["id"] for r in rows}
    for i, text in enumerate(CLEAN):
        rows.append({"id": f"clean-{i}", "problem": text, "answer": "1"})
        good.add(f"clean-{i}")
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, bad, good


def test_shipped_recipe_builds_offline_and_decontaminates_plants(benchmarks_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    planted, bad, good = _plants(benchmarks_dir, tmp_path)
    recipe = load_recipe(DataRecipe, RECIPE, ["mix.size=null"])
    gsm, syn = recipe.sources
    sources = [gsm.model_copy(update={"limit": 1500}), syn.model_copy(update={"limit": 800}),
               SourceSpec(name="file", path=str(planted), options={"label": "planted"})]
    recipe = recipe.model_copy(update={"sources": sources})
    out = build_dataset(recipe, tmp_path / "mix", data_dir=benchmarks_dir)

    ids = {e.id for split in ("train", "validation") for e in read_split(out, split)}
    assert not ids & bad, f"contaminated examples survived: {sorted(ids & bad)}"
    assert good <= ids, f"clean examples were dropped: {sorted(good - ids)}"
    card = json.loads((out / "card.json").read_text())
    dc = card["decontamination"]
    dropped = {d["id"]: d for d in dc["examples"]}
    assert bad <= set(dropped)
    # MATH-500 is a subset of the MATH test split, so a planted MATH-500 problem may match either
    assert {dropped[i]["matched"].split(":")[0] for i in bad} in ({"gsm8k", "math500"}, {"gsm8k", "math"})
    assert set(dc["benchmarks"]) >= {"gsm8k", "math500", "math", "svamp", "asdiv", "mawps", "gsm-hard", "aime24", "amc23"}
    assert {d["reason"] for d in dropped.values() if d["id"].startswith("plant-exact")} == {"exact"}
    # real GSM8K training data and the synthetic problems survive (only a handful are near test items)
    sources = Counter(e.source for split in ("train", "validation") for e in read_split(out, split))
    assert sources["gsm8k"] >= 1490 and sources["synth"] == 800
    assert "lengths.png" in {p.name for p in out.iterdir()} and (out / "card.md").read_text().count("plant-") >= 12


def _synth_recipe(**kw) -> DataRecipe:
    base = dict(sources=[SourceSpec(name="synth", limit=300)], decontaminate={"enabled": False}, seed=0)
    base.update(kw)
    return DataRecipe.model_validate(base)


def test_weighted_mix_split_and_roundtrip(tmp_path):
    recipe = _synth_recipe(
        sources=[SourceSpec(name="synth", limit=400, options={"label": "easy", "levels": [1]}),
                 SourceSpec(name="synth", limit=400, seed=5, options={"label": "hard", "levels": [5]}, weight=3)],
        mix={"size": 400}, split={"validation": 0.1})
    out = build_dataset(recipe, tmp_path / "d")
    train, val = read_split(out, "train"), read_split(out, "validation")
    assert len(train) == 360 and len(val) == 40
    both = train + val
    assert Counter(e.difficulty for e in both) == {1: 100, 5: 300}
    assert len({e.id for e in both}) == 400
    ex = train[0]
    assert ex.messages and ex.messages[1]["content"] == ex.solution and ex.meta["family"]
    card = json.loads((out / "card.json").read_text())
    assert {s["group"]: s["taken"] for s in card["sources"]} == {"easy": 100, "hard": 300}
    again = build_dataset(recipe, tmp_path / "d2")
    assert [e.id for e in read_split(again, "train")] == [e.id for e in train]


def test_curriculum_and_stratified_sampling(tmp_path):
    out = build_dataset(_synth_recipe(mix={"size": 250, "curriculum": True, "stratify_by": "difficulty"},
                                      split={"validation": 0}), tmp_path / "c")
    train = read_split(out, "train")
    levels = [e.difficulty for e in train]
    assert levels == sorted(levels) and Counter(levels) == {k: 50 for k in range(1, 6)}


def test_build_errors_name_the_problem(tmp_path):
    with pytest.raises(MathtuneError, match=r"filter 'min_difficulty' .*source 'synth' \(sources\[0\]\)"):
        build_dataset(_synth_recipe(sources=[SourceSpec(name="synth", limit=20, options={"levels": [1]})],
                                    filters={"min_difficulty": 4}), tmp_path / "e")
    assert not (tmp_path / "e").exists()
    with pytest.raises(MathtuneError, match="lists no sources"):
        build_dataset(DataRecipe(), tmp_path / "e")
    with pytest.raises(MathtuneError, match="unknown data source 'gsm8j'; did you mean 'gsm8k'"):
        build_dataset(_synth_recipe(sources=[SourceSpec(name="gsm8j")]), tmp_path / "e")


def test_every_shipped_data_recipe_loads():
    recipes = sorted((REPO / "recipes" / "data").glob("*.yaml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(DataRecipe, path)
        assert recipe.sources or recipe.kind == "cpt", path
        assert path.read_text().startswith("# mathtune data build"), f"{path} should open with its command"


def test_cli_build_and_show(tmp_path, capsys, benchmarks_dir):
    from mathtune.cli import main

    recipe = tmp_path / "r.yaml"
    weird = tmp_path / "weird.jsonl"  # rich markup characters must print literally
    weird.write_text(json.dumps({"problem": "Is [bold]x[/] in [1, 2]?", "answer": "[1, 2]"}) + "\n")
    recipe.write_text(f"sources:\n  - {{name: file, path: {weird}}}\n  - {{name: synth, limit: 120}}\n"
                      "decontaminate: {benchmarks: [gsm8k, math500]}\nmix: {curriculum: true}\n")
    out = tmp_path / "built"
    rc = main(["data", "build", str(recipe), "--data-dir", str(benchmarks_dir), "--out", str(out), "split.validation=20"])
    assert rc == 0 and len(read_split(out, "validation")) == 20
    split = "validation" if any(e.source == "weird" for e in read_split(out, "validation")) else "train"
    rc = main(["data", "show", str(out), "-n", "500", "--split", split])
    text = capsys.readouterr().out
    assert rc == 0 and "The final answer is" in text and "Decontamination" in text
    assert "[bold]x[/]" in text
    assert main(["data", "build", str(recipe), "--out", str(out), "mix.sise=3"]) == 2
    assert "did you mean 'mix.size'" in capsys.readouterr().err
    assert main(["data", "show", str(tmp_path)]) == 2
