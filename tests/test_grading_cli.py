"""`mathtune grade` command: output fields, summary, malformed lines, missing input.

    .venv/bin/python -m pytest tests/test_grading_cli.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mathtune.cli import main

ROWS = [
    {"question": "q1", "response": "So the answer is 18.", "gold": "Janet ...\n#### 18", "benchmark": "gsm8k"},
    {"question": "q2", "response": "The answer is 4.", "gold": "#### 5", "benchmark": "gsm8k"},
    {"response": r"We get $\boxed{\dfrac{9}{7}}$.", "gold": r"Thus $x=\boxed{\frac{9}{7}}$.", "benchmark": "math"},
    {"response": "I don't know", "gold": "3"},
]


def _write(path: Path, extra_lines: list[str] | None = None) -> Path:
    lines = [json.dumps(r) for r in ROWS[:2]] + (extra_lines or []) + [json.dumps(r) for r in ROWS[2:]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_grade_writes_fields_and_summary(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl")
    out = tmp_path / "graded.jsonl"
    assert main(["grade", str(src), "-o", str(out), "--workers", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False, True, False]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "no_answer"]
    assert rows[0]["extracted"] == "18" and rows[0]["question"] == "q1" and rows[0]["benchmark"] == "gsm8k"
    assert rows[3]["extracted"] is None
    err = capsys.readouterr().err
    assert "graded 4 responses: accuracy 50.00% (2/4)" in err
    assert "ok 3, no_answer 1, unparseable 0, timeout 0" in err
    assert "malformed lines skipped: 0" in err
    assert "gsm8k: 50.00% of 2" in err and "math: 100.00% of 1" in err
    assert not list(tmp_path.glob(".graded.jsonl.*"))  # atomic write left no temp file


def test_malformed_lines_are_reported_by_number_and_skipped(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", ['{"response": "1", "gold": ', '{"response": "The answer is 1."}', "[1, 2]"])
    assert main(["grade", str(src)]) == 0
    captured = capsys.readouterr()
    out_rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(out_rows) == 4
    assert "in.jsonl:3: skipped (invalid JSON" in captured.err
    assert "in.jsonl:4: skipped (missing field 'gold')" in captured.err
    assert "in.jsonl:5: skipped (expected a JSON object" in captured.err
    assert "malformed lines skipped: 3" in captured.err


def test_missing_input_is_a_clear_error_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mathtune.cli", "grade", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "mathtune: error: input file not found" in proc.stderr and "nope.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_extractor_exits_2_with_suggestion(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl")
    assert main(["grade", str(src), "--extract", "boxed,answeris"]) == 2
    assert "did you mean 'answer_is'" in capsys.readouterr().err


def test_extract_order_is_applied(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"response": "\\boxed{10} #### 11", "gold": "11"}) + "\n")
    assert main(["grade", str(src), "--extract", "gsm8k"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["extracted"] == "11" and row["correct"] is True
