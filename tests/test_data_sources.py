"""Source adapters against small local files in each Hub dataset's real format, local readers,
fallbacks, and the user errors (malformed line, missing column, filters emptying the data)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mathtune.data.mix import TokenCounter, apply_filters
from mathtune.data.recipe import FilterSpec, SourceSpec
from mathtune.data.sources import SourceUnavailable, load_source, load_with_fallbacks
from mathtune.errors import MathtuneError

FIX = Path(__file__).parent / "data" / "data_fixtures" / "sources"


def load(name: str, file: str, **kw) -> list:
    return load_source(SourceSpec(name=name, path=str(FIX / file), **kw))


def test_gsm8k_adapter_strips_calculator_annotations_and_reads_final_answer():
    exs = load("gsm8k", "gsm8k.jsonl")
    assert [e.answer for e in exs] == ["16", "3600"]
    assert "<<" not in exs[0].solution and "####" not in exs[0].solution
    assert exs[0].solution.splitlines()[-1] == "The final answer is \\boxed{16}."
    assert exs[0].source == "gsm8k" and exs[0].domain == "word_problems" and exs[0].difficulty == 1


def test_math_adapter_reads_last_boxed_level_and_subject():
    exs = load("math", "hendrycks_math.jsonl")
    assert [e.answer for e in exs] == ["12", "6", "6"]
    assert [e.difficulty for e in exs] == [1, 3, None]  # "Level ?" is unknown, not a crash
    assert [e.domain for e in exs] == ["arithmetic", "algebra", "combinatorics"]


def test_numina_math_cot_keeps_messages_and_marks_unanswerable():
    exs = load("numina-math-cot", "numina_math_cot.jsonl")
    assert exs[0].answer == "8" and exs[0].messages[0]["role"] == "user"
    assert exs[0].difficulty == 2 and exs[0].meta["origin"] == "orca_math"
    assert exs[1].answer == ""  # a proof: no gradable answer, dropped by require_answer later
    kept, dropped = apply_filters(exs, FilterSpec(), TokenCounter(None))
    assert [e.answer for e in kept] == ["8"] and dropped["require_answer"] == 1


def test_numina_qwq_cot_keeps_correct_traces_and_strips_the_instruction():
    exs = load("numina-qwq-cot", "numina_qwq_cot.jsonl")
    assert [e.answer for e in exs] == ["56", "\\frac{3}{4}"]
    assert exs[0].problem == "What is $7 \\cdot 8$?"
    all_rows = load("numina-qwq-cot", "numina_qwq_cot.jsonl", options={"only_correct": False})
    assert len(all_rows) == 3


def test_magpie_filters_quality_category_and_incomplete_thinking():
    exs = load("magpie-reasoning", "magpie_reasoning.jsonl")
    # m4 (quality good), m5 (coding) and m6 (thinking never closed) are filtered out
    assert sorted(e.meta["uuid"] for e in exs) == ["m1", "m2", "m3"]
    assert {e.answer for e in exs} == {"12", "4", "100"}
    assert {e.difficulty for e in exs} == {1, 3, 4}
    assert all("</think>" in e.solution for e in exs)
    loose = load("magpie-reasoning", "magpie_reasoning.jsonl", options={"input_quality": ["excellent", "good"]})
    assert len(loose) == 4


def test_magpie_limit_is_stratified_by_difficulty():
    exs = load("magpie-reasoning", "magpie_reasoning.jsonl", limit=2)
    assert len({e.difficulty for e in exs}) == 2


def test_nemotron_math_reads_question_or_prompt_and_expected_answer():
    exs = load("nemotron-math", "nemotron_math.jsonl")
    assert [e.answer for e in exs] == ["24", "55"]
    assert exs[0].problem == "Find the number of positive divisors of 360."
    assert exs[1].problem == "Compute $\\sum_{k=1}^{10} k$."  # from responses_create_params.input


def test_gsm_hard_formats_float_targets():
    exs = load("gsm-hard", "gsm_hard.jsonl")
    assert [e.answer for e in exs] == ["2469134", "3.5"]
    assert exs[0].solution.startswith("```python") and exs[0].solution.endswith("\\boxed{2469134}.")


def test_generic_file_with_mapping_csv_and_parquet(tmp_path):
    spec = dict(mapping={"problem": "q", "answer": "final", "solution": "work"})
    exs = load("file", "custom_columns.jsonl", **spec)
    assert [(e.problem, e.answer) for e in exs] == [("What is 6 * 7?", "42"), ("What is 10 - 3?", "7")]
    assert exs[0].source == "custom_columns"
    csv = tmp_path / "d.csv"
    csv.write_text("q,final\nWhat is 2+5?,7\nWhat is 9-1?,8\n", encoding="utf-8")
    exs = load_source(SourceSpec(name="file", path=str(csv), mapping={"problem": "q", "answer": "final"}))
    assert [e.answer for e in exs] == ["7", "8"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": ["What is 3*3?"], "answer": ["9"]}), tmp_path / "train.parquet")
    exs = load_source(SourceSpec(name="file", path=str(tmp_path), split="train"))
    assert [e.answer for e in exs] == ["9"]


def test_limit_and_seed_are_reproducible():
    a = load_source(SourceSpec(name="synth", limit=50, seed=3))
    b = load_source(SourceSpec(name="synth", limit=50, seed=3))
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 50
    one = load("math", "hendrycks_math.jsonl", limit=1, seed=0)
    assert len(one) == 1


def test_local_benchmark_dir_layout(benchmarks_dir):
    exs = load_source(SourceSpec(name="gsm8k", split="train", limit=20), data_dir=str(benchmarks_dir))
    assert len(exs) == 20 and all(e.answer for e in exs)
    hard = load_source(SourceSpec(name="gsm-hard", split="test", limit=5), data_dir=str(benchmarks_dir))
    assert len(hard) == 5


def test_unavailable_source_names_it_and_falls_back(tmp_path, caplog):
    spec = SourceSpec(name="gsm8k", path=str(tmp_path / "missing.jsonl"), limit=30, fallbacks=["synth"])
    with pytest.raises(SourceUnavailable, match="source 'gsm8k'"):
        load_source(spec)
    with caplog.at_level(logging.WARNING, logger="mathtune.data"):
        exs, used, notes = load_with_fallbacks(spec)
    assert used == "synth" and len(exs) == 30
    assert "trying fallback 'synth'" in caplog.text and notes


def test_hub_unavailable_offline_is_a_named_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr("mathtune.data.sources.hub_unreachable", lambda: None)
    with pytest.raises(SourceUnavailable, match=r"source 'gsm8k' \(openai/gsm8k, main.*could not be loaded"):
        load_source(SourceSpec(name="gsm8k"))
    with pytest.raises(MathtuneError, match=r"no usable source for sources\[0\] \(tried gsm8k, math\)"):
        load_with_fallbacks(SourceSpec(name="gsm8k", fallbacks=["math"]))


def test_unreachable_hub_fails_fast(monkeypatch):
    import time

    monkeypatch.setattr("mathtune.data.sources.hub_unreachable", lambda: "the Hugging Face Hub (huggingface.co) is unreachable")
    t0 = time.perf_counter()
    with pytest.raises(SourceUnavailable, match="unreachable") as e:
        load_source(SourceSpec(name="numina-math-cot", limit=10))
    assert time.perf_counter() - t0 < 2 and "data_dir" in e.value.hint


def test_malformed_jsonl_line_is_reported_by_number():
    with pytest.raises(MathtuneError, match=r"malformed JSONL in .*malformed.jsonl at line 3"):
        load("file", "malformed.jsonl")


def test_missing_column_names_the_column_and_the_mapping_option():
    with pytest.raises(MathtuneError) as e:
        load("gsm8k", "custom_columns.jsonl")
    assert "missing column 'question'" in e.value.message and "custom_columns.jsonl:1" in e.value.message
    assert "sources[0].mapping.question" in e.value.hint
    with pytest.raises(MathtuneError, match="column 'prob' .* not found"):
        load("file", "custom_columns.jsonl", mapping={"problem": "prob"})


def test_filters_report_drops_and_name_the_filter_that_empties_the_data():
    exs = load_source(SourceSpec(name="synth", limit=60, options={"levels": [1, 5]}))
    kept, dropped = apply_filters(exs, FilterSpec(max_difficulty=2), TokenCounter(None))
    assert dropped["max_difficulty"] == 30 and {e.difficulty for e in kept} == {1}
    with pytest.raises(MathtuneError, match="filter 'max_tokens' .*removed all 60") as e:
        apply_filters(exs, FilterSpec(max_tokens=2), TokenCounter(None))
    assert "filters.max_tokens" in e.value.hint and "words" in e.value.hint
    with pytest.raises(MathtuneError, match="filter 'domains'"):
        apply_filters(exs, FilterSpec(domains=["geometryy"]), TokenCounter(None))


def test_token_filter_uses_the_tokenizer_when_given(tiny_tokenizer):
    exs = load_source(SourceSpec(name="synth", limit=40, options={"families": ["arithmetic"]}))
    words = TokenCounter(None).count_many(exs)
    toks = TokenCounter(tiny_tokenizer).count_many(exs)
    assert all(t > w for t, w in zip(toks, words, strict=True))
    cut = sorted(toks)[20]
    kept, _ = apply_filters(exs, FilterSpec(max_tokens=cut), TokenCounter(tiny_tokenizer))
    assert 0 < len(kept) < 40


def test_fixtures_use_the_hub_field_names():
    """Guard against fixtures drifting from the real dataset layouts they stand for."""
    first = {f.name: json.loads(f.read_text().splitlines()[0]) for f in FIX.glob("*.jsonl")}
    assert set(first["magpie_reasoning.jsonl"]) >= {"conversations", "input_quality", "task_category", "difficulty"}
    assert set(first["numina_qwq_cot.jsonl"]) == {"problem_id", "prompt", "response", "ground_truth", "correct"}
    assert set(first["numina_math_cot.jsonl"]) == {"source", "problem", "solution", "messages"}
    assert set(first["nemotron_math.jsonl"]) >= {"responses_create_params", "question", "expected_answer"}
    assert set(first["gsm_hard.jsonl"]) == {"input", "code", "target"}
    assert set(first["hendrycks_math.jsonl"]) == {"problem", "level", "type", "solution"}


def test_hub_path_streams_large_sources_and_stops_early(monkeypatch):
    """The Hub path runs the same adapter on streamed rows, shuffles with the seed and stops
    once enough examples are accepted (here: Magpie rows in their published layout)."""
    import datasets

    rows = [json.loads(x) for x in (FIX / "magpie_reasoning.jsonl").read_text().splitlines()]
    calls, consumed = [], []

    class FakeStream:
        def shuffle(self, seed, buffer_size):
            calls.append(("shuffle", seed, buffer_size))
            return self

        def __iter__(self):
            for i in range(10_000):
                consumed.append(i)
                row = dict(rows[i % len(rows)])
                row["conversations"] = [dict(t) for t in row["conversations"]]
                row["conversations"][0]["value"] += f" (variant {i})"
                yield row

    def fake_load(path, name=None, split=None, streaming=False):
        calls.append((path, name, split, streaming))
        return FakeStream()

    monkeypatch.setattr("mathtune.data.sources.hub_unreachable", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    exs = load_source(SourceSpec(name="magpie-reasoning", limit=6, seed=4))
    assert calls[0] == ("Magpie-Align/Magpie-Reasoning-V2-250K-CoT-Deepseek-R1-Llama-70B", None, "train", True)
    assert calls[1][0] == "shuffle" and calls[1][1] == 4
    assert len(exs) == 6 and len(consumed) < 100  # 4x the limit accepted, then stop
    assert {e.difficulty for e in exs} == {1, 3, 4}  # stratified across the difficulties seen


def test_verify_answers_filter_uses_the_grader():
    from dataclasses import replace

    exs = load_source(SourceSpec(name="synth", limit=10, options={"levels": [1]}))
    broken = replace(exs[0], id="broken", answer=str(int(exs[0].answer) + 1) if exs[0].answer.isdigit() else "999")
    kept, dropped = apply_filters([*exs, broken], FilterSpec(verify_answers=True), TokenCounter(None))
    assert dropped["verify_answers"] == 1 and "broken" not in {e.id for e in kept} and len(kept) == 10
