"""HTML report: one self-contained file with embedded charts, the expected sections, escaped
examples, and a real headless Chromium render: the DOM after the page loads (summary table,
every chart decoded) and a full-page screenshot checked pixel-wise. Without chromium that test
skips, except under CI=true, where it fails (.ci/run installs chromium).

Run:  .venv/bin/pytest tests/test_report.py -q
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
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


def test_tool_use_is_in_the_report_per_run_and_per_problem(tmp_path):
    """A tool-integrated run (--tools python): its program counts in the summary, and each shown
    example says how many programs it ran, failed and timed out."""
    from mathtune.eval.metrics import compute_metrics

    run_dir = tmp_path / "tir"
    shutil.copytree(RUNS / "tuned", run_dir)
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r.update(tool_calls=i % 3, tool_failures=int(i % 3 == 2), tool_timeouts=int(i % 5 == 4) * (i % 3 > 0),
                 tool_limit_reached=False)
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = compute_metrics(rows, k=max(r["sample"] for r in rows) + 1)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    html = build_report([load_run(RUNS / "base"), load_run(run_dir)])
    t = metrics["tools"]
    table = html[html.index("<h3>Tool use</h3>"):]
    table = table[:table.index("</table>")]
    assert f">{t['calls']}</td>" in table and f">{t['failures']}</td>" in table and "tuned" in table
    assert t["calls"] > 0 and t["failures"] > 0
    shown = [r for r in rows if r["sample"] == 0 and r["tool_calls"] and f"<code>{r['id']}</code>" in html]
    assert shown and all(f"{r['tool_calls']} programs ({r['tool_failures']} failed" in html for r in shown)
    assert "<h3>Tool use</h3>" not in build_report([load_run(RUNS / "base"), load_run(RUNS / "tuned")])


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


# ----------------------------------------------------------------------------- real browser

# Run in the page after it loads (on a copy of the report: the report itself has no script):
# record each image's decoded size and every image's and table's box on the page, and the
# page height, as data- attributes that `--dump-dom` then shows.
PROBE = """<script>
addEventListener("load", () => {
  const box = e => { const r = e.getBoundingClientRect();
    return [r.left, r.top + scrollY, r.width, r.height].map(Math.round).join(","); };
  for (const e of document.querySelectorAll("img, table")) e.dataset.box = box(e);
  for (const i of document.images) i.dataset.natural = i.complete ? i.naturalWidth + "x" + i.naturalHeight : "0x0";
  document.body.dataset.height = document.documentElement.scrollHeight;
});
</script>"""
WIDTH = 1280


def _chromium() -> str:
    """The chromium binary; CI (CI=true) must have it (.ci/run installs it), elsewhere we skip."""
    exe = shutil.which("chromium")
    if exe is None:
        why = "chromium not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{why}: under CI the report must be rendered in a real browser (.ci/run installs it)")
        pytest.skip(why)
    return exe


def _headless(exe: str, profile: Path, height: int, *args: str) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=90).stdout


class _Dom(HTMLParser):
    """The rendered page's headings, images (with their attributes) and tables (cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.items: list[tuple[str, object]] = []  # ("h2", text) | ("img", attrs) | ("table", (attrs, rows))
        self._text: list[str] | None = None
        self._rows: list[list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "img":
            self.items.append(("img", a))
        elif tag == "table":
            self._rows = []
            self.items.append(("table", (a, self._rows)))
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("th", "td", "h2", "h3"):
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._text is not None and self._rows:
            self._rows[-1].append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag in ("h2", "h3") and self._text is not None:
            self.items.append((tag, "".join(self._text).strip()))
            self._text = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _box(attrs: dict[str, str]) -> tuple[int, int, int, int]:
    left, top, width, height = map(int, attrs["data-box"].split(","))
    return left, top, width, height


def test_report_renders_in_headless_chromium(two_run_report, tmp_path):
    import numpy as np
    from PIL import Image

    exe = _chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(two_run_report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _Dom()
    dom.feed(_headless(exe, tmp_path / "profile", 2400, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()))
    assert dom.body.get("data-height"), "the probe script did not run"
    page_height = int(dom.body["data-height"])
    assert 2000 < page_height < 20_000

    # The summary table, as the browser laid it out: a header and one row per run.
    after_summary = [x for x in dom.items[[x[1] for x in dom.items].index("Summary"):] if x[0] == "table"]
    summary_attrs, rows = after_summary[0][1]
    assert rows[0] == ["Run", "Model", "Benchmark", "n", "Accuracy [95% CI]", "maj@k", "pass@k", "Mean tokens"]
    assert [r[:4] for r in rows[1:]] == [["base", "smollm2-135m-instruct", "math500", "24"],
                                         ["tuned", "smollm2-135m-math-sft", "math500", "24"]]
    assert rows[1][4].startswith("29.2%") and rows[2][4].startswith("54.2%")

    # Every chart decoded to a real picture and sits on the page with a real size.
    charts = [a for kind, a in dom.items if kind == "img" and "chart" in a.get("class", "").split()]
    assert len(charts) == 5  # accuracy, subject, level, lengths, diagnostics
    for chart in charts:
        nat_w, nat_h = map(int, chart["data-natural"].split("x"))
        assert nat_w >= 400 and nat_h >= 150, chart["data-natural"]
        left, top, width, height = _box(chart)
        assert width >= 400 and height >= 150 and left >= 0 and top + height <= page_height, chart["data-box"]

    # The pixels: screenshot the whole page (the report itself, no probe) at the measured height.
    shot = tmp_path / "report.png"
    _headless(exe, tmp_path / "profile", page_height, f"--screenshot={shot}", two_run_report.as_uri())
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (page_height, WIDTH, 3)

    def region(attrs: dict[str, str]) -> np.ndarray:
        left, top, width, height = _box(attrs)
        return img[top:top + height, left:left + width].reshape(-1, 3)

    for n, chart in enumerate(charts):
        px = region(chart)
        drawn = (np.abs(px - 255).sum(axis=1) > 60).mean()  # share of clearly non-white pixels
        assert drawn > 0.02 and len(np.unique(px, axis=0)) > 50, (n, drawn)
    px = region(summary_attrs)
    assert (px.sum(axis=1) < 200).sum() > 500  # dark text: the table's cells are drawn
    # The charts' blue and orange bars are rendered (PALETTE[0] and PALETTE[1], allowing for blending).
    for ref in ((0x3B, 0x6E, 0xA8), (0xE0, 0x7B, 0x39)):
        assert (np.abs(img - np.array(ref)).sum(axis=2) < 40).sum() > 5000, ref
