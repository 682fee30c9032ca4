"""HTML report: one self-contained file with embedded charts, the expected sections, escaped
examples, and (when chromium is installed) a real headless render checked pixel-wise.

Run:  .venv/bin/pytest tests/test_report.py -q
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mathtune.cli import main
from mathtune.eval.metrics import load_run
from mathtune.eval.report import build_report

RUNS = Path(__file__).parent / "data" / "runs"
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


@pytest.fixture(scope="module")
def two_run_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(RUNS / "base"), str(RUNS / "tuned"), "-o", str(out), "--title", "SFT <vs> base"]) == 0
    return out


def test_report_is_one_self_contained_file(two_run_report):
    html = two_run_report.read_text(encoding="utf-8")
    assert [p.name for p in two_run_report.parent.iterdir()] == ["report.html"]  # atomic: no temp left
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    images = re.findall(r'<img class="chart" alt="chart" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 5  # accuracy, subject, level, lengths, diagnostics
    for img in images:
        png = base64.b64decode(img)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not EXTERNAL.search(html)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower()


def test_report_has_the_expected_sections(two_run_report):
    html = two_run_report.read_text(encoding="utf-8")
    assert "<title>SFT &lt;vs&gt; base</title>" in html  # the title is escaped too
    for section in ("<h2>Summary</h2>", "<h3>Sampling</h3>", "<h2>Accuracy by category</h2>", "<h3>By subject</h3>",
                    "<h3>By level</h3>", "<h2>Response length</h2>", "<h2>Reasoning diagnostics</h2>",
                    "<h2>Paired comparison: base → tuned</h2>", "Fixed: base wrong → tuned right (8)",
                    "Broken: base right → tuned wrong (2)", "McNemar p"):
        assert section in html, section
    summary = html[html.index("<h2>Summary</h2>"):html.index("<h3>Sampling</h3>")]
    assert "smollm2-135m-instruct" in summary and "math500" in summary
    assert "29.2%" in summary and "54.2%" in summary  # greedy accuracies of the fixture runs
    assert html.count("<details>") == 5 + 2  # 5 of 8 fixed shown, both broken
    assert "showing 5 of 8" in html


def test_examples_are_side_by_side_and_escaped(tmp_path):
    lines = (RUNS / "tuned" / "predictions.jsonl").read_text().splitlines()
    evil = "<script>alert('x')</script> & <b>bold</b>"
    rows = [json.loads(line) for line in lines]
    for r in rows:
        if r["id"] == "math-017" and r["sample"] == 0:
            r["response"] = evil + "\n" + r["response"]
    run_dir = tmp_path / "evil"
    shutil.copytree(RUNS / "tuned", run_dir)
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    html = build_report([load_run(RUNS / "base"), load_run(run_dir)])
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    block = html[html.index("<code>math-017</code>"):]
    block = block[:block.index("</details>")]
    assert block.count("<pre>") == 3 and "<div class=side>" in block  # problem + two responses
    assert '<span class="tag ok">correct</span>' in block and '<span class="tag no">wrong</span>' in block


def test_single_run_defaults_to_its_directory(tmp_path, capsys):
    run_dir = tmp_path / "only"
    shutil.copytree(RUNS / "base", run_dir)
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    rows = [{**r, "subject": None, "level": None} for r in rows if r["sample"] == 0]
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(run_dir)]) == 0
    assert "wrote " in capsys.readouterr().out
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Summary</h2>" in html and "Paired comparison" not in html
    assert "Accuracy by category" not in html and "<h3>Sampling</h3>" not in html
    assert html.count("data:image/png;base64,") == 3  # accuracy, lengths, diagnostics


def test_report_user_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "eval run directory not found" in capsys.readouterr().err
    assert main(["report", str(RUNS / "base"), "-o", str(tmp_path / "r.pdf")]) == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(two_run_report, tmp_path):
    import numpy as np
    from PIL import Image

    shot = tmp_path / "report.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1280,2400", two_run_report.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=90)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (2400, 1280, 3)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, tables and charts, not a blank or single-colour page
    # The charts' blue and orange bars are rendered (PALETTE[0] and PALETTE[1], allowing for blending).
    for ref in ((0x3B, 0x6E, 0xA8), (0xE0, 0x7B, 0x39)):
        assert (np.abs(img - np.array(ref)).sum(axis=2) < 40).sum() > 5000, ref
