"""One benchmark registry for eval and decontamination: for every registered benchmark the data
stage's decontamination reads exactly the problem texts eval scores, from the real local files
and through the Hub code path (with `datasets.load_dataset` replaced by small fakes shaped like
each Hub dataset); with the Hub unreachable both fail at once with one named error.

    .venv/bin/python -m pytest tests/test_benchmark_registry.py -q
"""

from __future__ import annotations

import socket
import time

import pytest

from mathtune import benchmarks
from mathtune.benchmarks import BENCHMARKS, get_benchmark, load_problems
from mathtune.data.testsets import load_test_problems
from mathtune.errors import MathtuneError

PROBE = benchmarks.hub_unreachable  # the cached probe (tests replace the module attribute)

# Rows of each local file (../shared/data/benchmarks/SOURCES.md).
LOCAL_ROWS = {"gsm8k": 1319, "math": 5000, "math500": 500, "gsm-hard": 1319, "svamp": 1000, "asdiv": 2215,
              "mawps": 2065, "aime24": 30, "amc23": 40}

MATH_SUBJECTS = ("Algebra", "Counting & Probability", "Geometry", "Intermediate Algebra", "Number Theory",
                 "Prealgebra", "Precalculus")


def _math_row(subject: str, text: str) -> dict:
    return {"problem": text, "level": "Level 2", "type": subject, "solution": "so $\\boxed{1}$"}


# {Hub dataset: {config: {split: rows}}}, with the field names of the real Hub datasets. Each
# benchmark has one record whose problem text is empty, and decoy configs/splits that a loader
# reading the wrong one would pick up.
FAKE_HUB: dict[str, dict[str, dict[str, list[dict]]]] = {
    "openai/gsm8k": {
        "main": {"test": [{"question": "Janet has 3 ducks. How many?", "answer": "3 ducks.\n#### 3"},
                          {"question": "", "answer": "#### 0"},
                          {"question": "Tom runs 2 miles a day. How far in 3 days?", "answer": "#### 6"}],
                 "train": [{"question": "Natalia sold 48 clips.", "answer": "48/2 = <<48/2=24>>24\n#### 72"}]},
        "socratic": {"test": [{"question": "DECOY socratic config", "answer": "#### 1"}]},
    },
    "DigitalLearningGmbH/MATH-lighteval": {
        "default": {"test": [_math_row(s, f"A {s} problem: what is $1^{i}$?") for i, s in enumerate(MATH_SUBJECTS)]
                    + [_math_row("Algebra", "  ")],
                    "train": [_math_row("Algebra", "DECOY train split")]},
        **{s.lower().replace(" & ", "_and_").replace(" ", "_"): {"test": [_math_row(s, f"DECOY {s} config only")]}
           for s in MATH_SUBJECTS},
    },
    "HuggingFaceH4/MATH-500": {"default": {"test": [
        {"problem": "Convert $(0,3)$ to polar coordinates.", "solution": "...", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
         "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"},
        {"problem": "", "solution": "", "answer": "1", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"},
    ]}},
    "reasoning-machines/gsm-hard": {"default": {"train": [
        {"input": "Janet has 4933828 ducks. How many?", "code": "def solution(): return 4933828", "target": 4933828.0},
        {"input": None, "code": "", "target": 1.0},
    ]}},
    "ChilleD/SVAMP": {"default": {
        "test": [{"ID": "chal-777", "Body": "There are 87 oranges and 290 bananas in Philip's collection", "Question":
                  "How big is each group", "Equation": "( 290.0 / 2.0 )", "Answer": 145.0, "Type": "Common-Division",
                  "question_concat": "There are 87 oranges ... How big is each group"},
                 {"ID": "chal-1", "Body": "", "Question": "", "Equation": "", "Answer": 1.0, "Type": "Addition",
                  "question_concat": ""}],
        "train": [{"ID": "chal-2", "Body": "DECOY", "Question": "train split", "Equation": "", "Answer": 1.0,
                   "Type": "Addition", "question_concat": ""}]}},
    "EleutherAI/asdiv": {"default": {"validation": [
        {"body": "Seven red apples and two green apples are in the basket.", "question": "How many apples are in the basket?",
         "solution_type": "Addition", "answer": "9 (apples)", "formula": "7+2=9"},
        {"body": "", "question": "", "solution_type": "Addition", "answer": "1", "formula": ""},
    ]}},
    "MU-NLPC/Calc-mawps": {
        "original-splits": {"test": [
            {"id": "singleeq-1", "question": "Joan found 70 seashells on the beach.", "chain": "", "result": "43",
             "result_float": 43.0, "equation": "x=70-27", "expression": "70-27"},
            {"id": "singleeq-2", "question": "", "chain": "", "result": "1", "result_float": 1.0, "equation": "", "expression": ""},
        ]},
        "default": {"test": [{"id": "x", "question": "DECOY default config", "chain": "", "result": "1", "result_float": 1.0,
                              "equation": "", "expression": ""}]},
    },
    "HuggingFaceH4/aime_2024": {"default": {"train": [
        {"id": 60, "problem": "Every morning Aya goes for a 9-kilometer-long walk.", "solution": "...", "answer": "204",
         "url": "https://artofproblemsolving.com", "year": "2024"},
        {"id": 61, "problem": "", "solution": "", "answer": "1", "url": "", "year": "2024"},
    ]}},
    "math-ai/amc23": {"default": {"test": [
        {"id": 0, "question": "Cities $A$ and $B$ are $45$ miles apart.", "answer": 27.0, "url": ""},
        {"id": 1, "question": "", "answer": 1.0, "url": ""},
    ]}},
}

# What eval must score (and decontamination must index) from those fakes, written out by hand.
EXPECTED_HUB_TEXTS = {
    "gsm8k": ["Janet has 3 ducks. How many?", "Tom runs 2 miles a day. How far in 3 days?"],
    "math": [f"A {s} problem: what is $1^{i}$?" for i, s in enumerate(MATH_SUBJECTS)],
    "math500": ["Convert $(0,3)$ to polar coordinates."],
    "gsm-hard": ["Janet has 4933828 ducks. How many?"],
    "svamp": ["There are 87 oranges and 290 bananas in Philip's collection. How big is each group"],
    "asdiv": ["Seven red apples and two green apples are in the basket. How many apples are in the basket?"],
    "mawps": ["Joan found 70 seashells on the beach."],
    "aime24": ["Every morning Aya goes for a 9-kilometer-long walk."],
    "amc23": ["Cities $A$ and $B$ are $45$ miles apart."],
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("MATHTUNE_DATA", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    PROBE.cache_clear()
    yield
    PROBE.cache_clear()


@pytest.fixture()
def fake_hub(monkeypatch) -> list[tuple[str, str | None, str]]:
    """`datasets.load_dataset` answering from FAKE_HUB (as the Hub does: a dataset with several
    configs needs one named); the reachability probe passes. Returns the calls made."""
    import datasets

    calls: list[tuple[str, str | None, str]] = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        configs = FAKE_HUB[path]
        if name is None:
            if len(configs) > 1:
                raise ValueError(f"Config name is missing. Please pick one among the available configs: {sorted(configs)}")
            name = next(iter(configs))
        return datasets.Dataset.from_list(configs[name][split])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(benchmarks, "hub_unreachable", lambda: None)
    return calls


def test_every_registered_benchmark_has_a_hub_fake_and_expected_texts():
    assert set(EXPECTED_HUB_TEXTS) == set(BENCHMARKS) == set(LOCAL_ROWS)
    assert {s.hub.path for s in BENCHMARKS.values() if s.hub} == set(FAKE_HUB)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_hub_decontamination_reads_what_eval_scores(fake_hub, capsys, name):
    spec = get_benchmark(name)
    scored = [p.problem for p in load_problems(spec)]
    tests, notes = load_test_problems([name], None)
    assert notes == []
    assert tests[name] == scored == EXPECTED_HUB_TEXTS[name]
    # both read the config and split the registry names, and report the empty record the same way
    assert fake_hub == [(spec.hub.path, spec.hub.config, spec.hub.split)] * 2
    err = capsys.readouterr().err
    assert err.count(f"benchmark {name!r} (hub:{spec.hub.path}): skipped 1 record(s) with an empty problem text") == 2


def test_hub_math_covers_all_subjects_and_mawps_the_eval_config(fake_hub):
    tests, _ = load_test_problems("all", None)
    assert set(tests) == set(BENCHMARKS)
    assert all(any(s in t for t in tests["math"]) for s in MATH_SUBJECTS)
    assert not any("DECOY" in t for texts in tests.values() for t in texts)
    assert ("MU-NLPC/Calc-mawps", "original-splits", "test") in fake_hub


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_local_decontamination_reads_what_eval_scores(benchmarks_dir, name):
    scored = [p.problem for p in load_problems(get_benchmark(name), benchmarks_dir)]
    tests, notes = load_test_problems([name], benchmarks_dir)
    assert notes == []
    assert tests[name] == scored
    assert len(scored) == LOCAL_ROWS[name] and all(t.strip() for t in scored)


def test_local_dir_without_a_benchmark_file(fake_hub, tmp_path):
    """Eval reports the missing file; decontamination takes that benchmark from the Hub."""
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "Local only?", "answer": "#### 1"}\n')
    with pytest.raises(MathtuneError, match="not found in the data dir"):
        load_problems(get_benchmark("amc23"), tmp_path)
    tests, notes = load_test_problems(["gsm8k", "amc23"], tmp_path)
    assert tests == {"gsm8k": ["Local only?"], "amc23": EXPECTED_HUB_TEXTS["amc23"]} and notes == []
    assert fake_hub == [("math-ai/amc23", None, "test")]


def test_unknown_benchmark_suggests_before_loading(fake_hub):
    with pytest.raises(MathtuneError, match="did you mean 'gsm-hard'"):
        load_test_problems(["gsm8k", "gsm_hard"], None)
    assert fake_hub == []


# ------------------------------------------------------------------------ offline Hub


@pytest.fixture()
def no_network(monkeypatch) -> list[tuple]:
    """Every TCP connection fails as it does without DNS; `datasets.load_dataset` would retry for
    ~25 s, so calling it at all fails the test."""
    import datasets

    probes: list[tuple] = []

    def refuse(address, *a, **k):
        probes.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    def slow_load(*a, **k):
        pytest.fail("datasets.load_dataset was called although the Hub is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", slow_load)
    return probes


def test_offline_eval_fails_fast_with_one_named_error(no_network, capsys):
    from mathtune.cli import main

    t0 = time.perf_counter()
    rc = main(["eval", "--benchmark", "gsm8k", "--limit", "1"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and elapsed < 5, (rc, elapsed)
    assert "cannot load benchmark 'gsm8k' from the Hugging Face Hub" in err and "unreachable" in err
    assert "--data-dir DIR" in err and "MATHTUNE_DATA" in err and "Traceback" not in err
    assert no_network == [("huggingface.co", 443)]


def test_offline_decontamination_probes_once_and_names_each_benchmark(no_network):
    t0 = time.perf_counter()
    tests, notes = load_test_problems("all", None)
    assert tests == {} and len(notes) == len(BENCHMARKS) and time.perf_counter() - t0 < 5
    assert all(f"benchmark {n!r} test set unavailable" in note for n, note in zip(BENCHMARKS, notes, strict=True))
    assert len(no_network) == 1  # one probe per process, not one per benchmark
    with pytest.raises(MathtuneError, match="benchmark 'gsm8k' test set unavailable") as e:
        load_test_problems(["gsm8k"], None, on_unavailable="error")
    assert "--data-dir" in e.value.hint and "on_unavailable=warn" in e.value.hint


def test_probe_honours_offline_mode_and_proxies(monkeypatch):
    probes: list[tuple] = []
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: probes.append(address) or _Closed())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert benchmarks.hub_unreachable() is None and probes == []  # datasets answers from its cache
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    PROBE.cache_clear()
    assert benchmarks.hub_unreachable() is None and probes == [("proxy.example", 3128)]


class _Closed:
    def close(self) -> None:
        pass
