"""Benchmark registry: every shipped spec loads from the shared data dir with the right fields;
typos suggest; custom JSONL files with a field mapping; offline Hub failure is one clear error."""

from __future__ import annotations

import json

import pytest

from mathtune import benchmarks
from mathtune.benchmarks import (
    BENCHMARKS,
    FieldMap,
    get_benchmark,
    gold_from,
    load_problems,
    resolve_benchmark,
)
from mathtune.errors import MathtuneError
from mathtune.eval.fewshot import clean_solution, load_exemplars
from mathtune.grading import EXTRACTORS
from mathtune.prompts import STYLES

# (name, rows, first id, first gold, a phrase in the first problem, subject, level)
EXPECTED = {
    "gsm8k": (1319, "gsm8k-0", "18", "Janet", None, None),
    "math": (5000, "0", "2", "vertical asymptotes", "Algebra", 3),
    "math500": (500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)", "polar coordinates", "Precalculus", 2),
    "gsm-hard": (1319, "gsm-hard-0", None, "4933828", None, None),
    "svamp": (1000, "chal-777", "145", "organized into 93 groups. How big is each group", "Common-Division", None),
    "asdiv": (2215, "asdiv-0", "9", "Seven red apples and two green apples are in the basket. How many", "Addition", None),
    "mawps": (2065, "mawps-0", "43", "Joan found 70 seashells", "singleeq", None),
    "aime24": (30, "60", "204", "Every morning Aya", None, None),
    "amc23": (40, "0", "27", "Cities $A$ and $B$", None, None),
}


def test_registry_is_complete_and_consistent():
    assert set(EXPECTED) <= set(BENCHMARKS)
    for spec in BENCHMARKS.values():
        assert spec.prompt in STYLES
        assert all(e in EXTRACTORS for e in spec.extract), spec.name
        assert spec.version >= 1 and spec.file.endswith(".jsonl")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loads_shared_benchmark(benchmarks_dir, name):
    rows, first_id, gold, phrase, subject, level = EXPECTED[name]
    problems = load_problems(get_benchmark(name), benchmarks_dir)
    assert len(problems) == rows
    p = problems[0]
    assert p.id == first_id and p.index == 0
    assert phrase in p.problem
    if gold is not None:
        assert p.gold == gold
    assert p.gold and "####" not in p.gold and "(" not in p.gold.replace("\\left(", "")
    assert p.subject == subject and p.level == level
    assert len({q.id for q in problems}) == rows  # ids are unique


def test_gsm_hard_gold_is_numeric(benchmarks_dir):
    golds = [p.gold for p in load_problems(get_benchmark("gsm-hard"), benchmarks_dir, limit=50)]
    assert all(float(g) == float(g) for g in golds)
    assert not any(g.endswith(".0") for g in golds)


def test_limit_and_fewshot_from_train_split(benchmarks_dir):
    assert len(load_problems(get_benchmark("gsm8k"), benchmarks_dir, limit=7)) == 7
    shots = load_exemplars(get_benchmark("gsm8k"), benchmarks_dir, 2)
    assert shots[0][0].startswith("Natalia sold clips")
    assert "<<" not in shots[0][1] and "####" not in shots[0][1] and shots[0][2] == "72"
    fixed = load_exemplars(get_benchmark("aime24"), benchmarks_dir, 3)  # no train split: fixed list
    assert len(fixed) == 3 and fixed[0][2] == "4"


def test_typo_suggests_closest():
    with pytest.raises(MathtuneError, match="did you mean 'gsm8k'"):
        get_benchmark("gsm8kk")
    with pytest.raises(MathtuneError, match="did you mean 'math500'"):
        resolve_benchmark("math-500")


def test_custom_jsonl_with_field_mapping(tmp_path):
    path = tmp_path / "mine" / "test.jsonl"
    path.parent.mkdir()
    rows = [{"q": "What is 2+2?", "a": 4.0, "uid": "x1"}, {"q": "Half of 3?", "a": "1.5", "uid": "x2"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    spec = resolve_benchmark(str(path), "problem=q,answer=a,id=uid")
    assert spec.name == "mine"
    problems = load_problems(spec)
    assert [(p.id, p.problem, p.gold) for p in problems] == [("x1", "What is 2+2?", "4"), ("x2", "Half of 3?", "1.5")]
    with pytest.raises(MathtuneError, match="no field 'question'"):
        load_problems(resolve_benchmark(str(path), "problem=question,answer=a"))
    with pytest.raises(MathtuneError, match="missing answer"):
        FieldMap.parse("problem=q")
    with pytest.raises(MathtuneError, match="did you mean 'subject'"):
        FieldMap.parse("problem=q,answer=a,subjet=s")


def test_data_dir_missing_file_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(MathtuneError, match="not found in the data dir"):
        load_problems(get_benchmark("gsm8k"), tmp_path)

    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("MATHTUNE_DATA", raising=False)
    monkeypatch.setattr(benchmarks, "hub_unreachable", lambda: None)  # the probe passes; the load fails
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MathtuneError, match="cannot load benchmark 'gsm8k' from the Hugging Face Hub") as e:
        load_problems(get_benchmark("gsm8k"))
    assert "--data-dir" in e.value.hint


def test_env_data_dir(benchmarks_dir, monkeypatch):
    monkeypatch.setenv("MATHTUNE_DATA", str(benchmarks_dir))
    assert load_problems(get_benchmark("amc23"))[1].gold


def test_gold_from_kinds():
    assert gold_from(27.0, "number") == "27"
    assert gold_from(0.5, "number") == "0.5"
    assert gold_from("9 (apples)", "number") == "9"
    assert gold_from("1,000", "number") == "1000"
    assert gold_from("Sam sold 3.\n#### 1,234", "gsm8k_solution") == "1234"
    assert gold_from("so $\\boxed{\\frac{1}{2}}$.", "boxed_solution") == "\\frac{1}{2}"
    assert clean_solution("a <<1+1=2>>2\n#### 2") == "a 2"
