"""One self-contained HTML report over one or more eval runs.

The file opens offline: CSS is inline, charts are PNGs (matplotlib, Agg backend) embedded as
base64 data URIs, and nothing references an external resource. Sections: summary table,
accuracy with 95% intervals, per-subject / per-level accuracy, response lengths, reasoning
diagnostics and, with two or more runs, the paired comparison of the first run against the last
with example solutions side by side (fixed and broken problems, in collapsible <details>).
Training runs given with `--train RUN` add their curves: for RL runs the reward, its parts per
reward function, the within-group std, the share of zero-signal groups and the completion length.

Try it:  mathtune report tests/data/runs/base tests/data/runs/tuned -o /tmp/report.html
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import statistics
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .compare import compare_runs
from .metrics import Run

PALETTE = ["#3b6ea8", "#e07b39", "#4a9a5b", "#c0504d", "#8064a2", "#8c6d4f", "#4bacc6"]
EXAMPLES = 5  # fixed / broken examples shown side by side
RESPONSE_CHARS = 6000  # longer responses are cut in the examples (the tail is kept: answers live there)

CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f7f8fa;--accent:#3b6ea8;--good:#2f7d46;--bad:#b83232}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:32px 28px 64px}
header{border-bottom:3px solid var(--accent);margin-bottom:24px;padding-bottom:12px}
h1{font-size:28px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:20px;margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:22px 0 8px}
.meta,.note{color:var(--muted);font-size:13px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:4px 22px 20px;margin-bottom:22px}
table{border-collapse:collapse;width:100%;font-size:14px;margin:8px 0}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{background:#f0f3f7;font-weight:600;color:#323f4b;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.pos{color:var(--good);font-weight:600}.neg{color:var(--bad);font-weight:600}
img.chart{display:block;max-width:100%;height:auto;margin:10px auto}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{flex:1 1 150px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fbfcfd}
.card .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
details{border:1px solid var(--line);border-radius:6px;margin:8px 0;background:#fff}
summary{cursor:pointer;padding:8px 12px;font-size:14px}
summary code{color:var(--muted)}
.ex{padding:0 12px 12px}
.side{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.side>div{min-width:0}
pre{white-space:pre-wrap;word-break:break-word;background:#f5f7fa;border:1px solid var(--line);border-radius:4px;padding:8px 10px;font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:420px;overflow:auto;margin:4px 0}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.tag.ok{background:#e3f4e8;color:var(--good)}.tag.no{background:#fbe5e5;color:var(--bad)}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:30px}
"""


# ----------------------------------------------------------------------------- helpers


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _signed_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f} pp"


def _labels(runs: list[Run]) -> list[str]:
    """Distinct short labels: the run name, numbered when two runs share it."""
    names = [r.name for r in runs]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    return f'<img class="chart" alt="chart" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


CHART_STYLE = {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
               "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure on the Agg canvas, without pyplot: no global state, no GUI backend, faster import."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else "num"}">{c}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- charts


def accuracy_chart(labels: list[str], metrics: list[dict[str, Any]]) -> str:
    acc = [m["accuracy"]["value"] for m in metrics]
    lo = [a - m["accuracy"]["ci95"][0] for a, m in zip(acc, metrics, strict=True)]
    hi = [m["accuracy"]["ci95"][1] - a for a, m in zip(acc, metrics, strict=True)]
    fig, ax = _figure(9.5, 0.6 + 0.55 * len(labels))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, [100 * a for a in acc], xerr=[[100 * v for v in lo], [100 * v for v in hi]], height=0.6,
            color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))], capsize=5, ecolor="#333")
    for yi, a, h in zip(y, acc, hi, strict=True):
        ax.text(100 * (a + h) + 1.2, yi, f"{100 * a:.1f}%", va="center", fontsize=10)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy, greedy sample (%) — bars: 95% Wilson interval")
    ax.grid(axis="y", visible=False)
    return _png(fig)


def category_chart(labels: list[str], groups_per_run: list[dict[str, Any] | None], what: str) -> str:
    cats: list[str] = []
    for g in groups_per_run:
        cats += [c for c in (g or {}) if c not in cats]
    fig, ax = _figure(9.5, 0.9 + 0.32 * len(cats) * max(1, len(labels)) ** 0.5 + 0.2 * len(cats))
    width = 0.8 / len(labels)
    ys = list(range(len(cats)))[::-1]
    for i, (label, groups) in enumerate(zip(labels, groups_per_run, strict=True)):
        groups = groups or {}
        vals = [100 * groups[c]["value"] if c in groups else 0.0 for c in cats]
        err_lo = [100 * (groups[c]["value"] - groups[c]["ci95"][0]) if c in groups else 0 for c in cats]
        err_hi = [100 * (groups[c]["ci95"][1] - groups[c]["value"]) if c in groups else 0 for c in cats]
        pos = [y + 0.4 - width * (i + 0.5) for y in ys]
        ax.barh(pos, vals, height=width * 0.92, xerr=[err_lo, err_hi], capsize=2, ecolor="#555",
                color=PALETTE[i % len(PALETTE)], label=label)
    first = next((g for g in groups_per_run if g), {})
    ax.set_yticks(ys, [f"{c}  (n={first[c]['n']})" if c in first else c for c in cats])
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"accuracy by {what} (%) — whiskers: 95% Wilson interval")
    ax.grid(axis="y", visible=False)
    if len(labels) > 1:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(labels), 4), fontsize=9, frameon=False)
    return _png(fig)


def _lengths(run: Run) -> tuple[list[float], str]:
    tokens = [r.get("tokens") for r in run.records]
    if tokens and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in tokens):
        return [float(t) for t in tokens], "generated tokens"
    return [float(len(str(r.get("response") or "").split())) for r in run.records], "words"


def length_chart(labels: list[str], runs: list[Run]) -> str:
    data = [_lengths(r) for r in runs]
    unit = data[0][1] if len({u for _, u in data}) == 1 else "words"
    if unit == "words":
        data = [(d if u == "words" else [float(len(str(r.get("response") or "").split())) for r in run.records], "words")
                for (d, u), run in zip(data, runs, strict=True)]
    top = max(max(d) for d, _ in data) or 1.0
    bins = [top * i / 30 for i in range(31)]
    fig, ax = _figure(9.5, 3.4)
    for i, (label, (vals, _)) in enumerate(zip(labels, data, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        ax.hist(vals, bins=bins, histtype="stepfilled", alpha=0.18, color=color)
        ax.hist(vals, bins=bins, histtype="step", linewidth=1.8, color=color,
                label=f"{label} (median {statistics.median(vals):.0f})")
        ax.axvline(statistics.median(vals), color=color, linestyle="--", linewidth=1)
    ax.set_xlabel(f"response length ({unit}, all samples)")
    ax.set_ylabel("responses")
    ax.legend(fontsize=9, frameon=False)
    return _png(fig)


DIAG_RATES = [("truncation_rate", "truncated"), ("doubt_loop_rate", "doubt loop"),
              ("repetition_rate", "repetition"), ("no_answer_rate", "no answer")]


def diagnostics_chart(labels: list[str], metrics: list[dict[str, Any]]) -> str:
    fig, ax = _figure(9.5, 3.2)
    width = 0.8 / len(labels)
    xs = list(range(len(DIAG_RATES)))
    for i, (label, m) in enumerate(zip(labels, metrics, strict=True)):
        vals = [100 * (m["diagnostics"][k] or 0) for k, _ in DIAG_RATES]
        ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], vals, width=width * 0.92,
               color=PALETTE[i % len(PALETTE)], label=label)
    ax.set_xticks(xs, [name for _, name in DIAG_RATES])
    ax.set_ylabel("% of responses")
    ax.grid(axis="x", visible=False)
    if len(labels) > 1:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(labels), 4), fontsize=9, frameon=False)
    return _png(fig)


# ----------------------------------------------------------------------------- sections


def summary_section(labels: list[str], runs: list[Run], metrics: list[dict[str, Any]]) -> str:
    rows = []
    for label, run, m in zip(labels, runs, metrics, strict=True):
        a = m["accuracy"]
        maj = m.get("maj_at_k")
        pk = m.get("pass_at_k") or {}
        top_k = max(pk, key=int) if pk else None
        rows.append([
            f"<b>{_e(label)}</b>", _e(run.model), _e(run.benchmark), str(m["n"]),
            f"<b>{_pct(a['value'])}</b> <span class=note>[{_pct(a['ci95'][0])}, {_pct(a['ci95'][1])}]</span>",
            f"{_pct(maj['value'])} <span class=note>(k={maj['k']})</span>" if maj else "–",
            f"{_pct(pk[top_k])} <span class=note>(k={top_k})</span>" if top_k else "–",
            "–" if m["diagnostics"]["tokens"]["mean"] is None else f"{m['diagnostics']['tokens']['mean']:.0f}",
        ])
    table = _table(["Run", "Model", "Benchmark", "n", "Accuracy [95% CI]", "maj@k", "pass@k", "Mean tokens"], rows, left=3)
    return (f"<section><h2>Summary</h2>{table}{sampling_table(labels, metrics)}{tools_table(labels, metrics)}"
            f"<p class=note>Accuracy is on the greedy sample (sample 0) "
            "with a 95% Wilson score interval. maj@k: self-consistency vote over equivalent answers; "
            "pass@k: unbiased estimator (Chen et al. 2021).</p>"
            f"{accuracy_chart(labels, metrics)}</section>")


def sampling_table(labels: list[str], metrics: list[dict[str, Any]]) -> str:
    """Mean sample accuracy, maj@k and every pass@k, for runs with several samples per problem."""
    ks = sorted({int(k) for m in metrics for k in (m.get("pass_at_k") or {})})
    if not ks:
        return ""
    rows = []
    for label, m in zip(labels, metrics, strict=True):
        maj, pk = m.get("maj_at_k"), m.get("pass_at_k") or {}
        rows.append([f"<b>{_e(label)}</b>", str(m["samples_per_problem"]), _pct(m.get("mean_sample_accuracy")),
                     f"{_pct(maj['value'])} <span class=note>[{_pct(maj['ci95'][0])}, {_pct(maj['ci95'][1])}]</span>" if maj else "–",
                     *[_pct(pk.get(str(k))) for k in ks]])
    return "<h3>Sampling</h3>" + _table(["Run", "Samples", "Mean sample acc.", "maj@k [95% CI]",
                                         *[f"pass@{k}" for k in ks]], rows)


def tools_table(labels: list[str], metrics: list[dict[str, Any]]) -> str:
    """Programs run, failed and timed out per run, for tool-integrated runs (`--tools python`)."""
    rows = []
    for label, m in zip(labels, metrics, strict=True):
        t = m.get("tools")
        if t:
            rows.append([f"<b>{_e(label)}</b>", str(t["calls"]), f"{t['calls_per_response']:.2f}",
                         str(t["responses_with_calls"]), str(t["failures"]), str(t["timeouts"]), str(t["limit_reached"])])
    if not rows:
        return ""
    return "<h3>Tool use</h3>" + _table(["Run", "Programs run", "Per response", "Responses with a program",
                                         "Failed", "Timed out", "Hit the call limit"], rows)


def categories_section(labels: list[str], metrics: list[dict[str, Any]]) -> str:
    parts = []
    for key, what in (("by_subject", "subject"), ("by_level", "level")):
        groups = [m.get(key) for m in metrics]
        if any(groups):
            parts.append(f"<h3>By {what}</h3>{category_chart(labels, groups, what)}")
    return f"<section><h2>Accuracy by category</h2>{''.join(parts)}</section>" if parts else ""


def diagnostics_section(labels: list[str], runs: list[Run], metrics: list[dict[str, Any]]) -> str:
    rows = []
    for label, m in zip(labels, metrics, strict=True):
        d = m["diagnostics"]
        t, c = d["tokens"], d["chars"]
        rows.append([f"<b>{_e(label)}</b>", str(d["n_responses"]),
                     "–" if t["mean"] is None else f"{t['mean']:.0f} / {t['median']:.0f}",
                     f"{c['mean']:.0f} / {c['median']:.0f}",
                     *[_pct(d[k]) for k, _ in DIAG_RATES]])
    th = metrics[0]["diagnostics"]["thresholds"]
    table = _table(["Run", "Responses", "Tokens mean / median", "Chars mean / median",
                    "Truncated", "Doubt loop", "Repetition", "No answer"], rows)
    note = (f"<p class=note>Doubt loop: ≥{th['doubt_min']} self-doubt markers (“Wait,”, “Hmm”, “Actually,”, "
            f"“Let me re-check”…). Repetition: a {th['ngram_words']}-word n-gram occurring ≥{th['repeat_min']} "
            f"times, or a tail that loops ≥{th['repeat_min']} times over ≥{th['loop_min_words']} words. "
            "Truncated: hit max_new_tokens. All samples counted.</p>")
    return (f"<section><h2>Response length</h2>{length_chart(labels, runs)}</section>"
            f"<section><h2>Reasoning diagnostics</h2>{table}{note}{diagnostics_chart(labels, metrics)}</section>")


def _delta_cell(x: float | None) -> str:
    if x is None:
        return "–"
    cls = "pos" if x > 0 else "neg" if x < 0 else ""
    return f'<span class="{cls}">{_signed_pct(x)}</span>'


def _diag_row(key: str, v: dict[str, Any]) -> list[str]:
    """One row of the diagnostics comparison; fewer failures show green, more red."""
    name = key.replace("_", " ")
    if v["delta"] is None:
        return [_e(name), _e(v["a"]), _e(v["b"]), "–"]
    cls = "pos" if v["delta"] < 0 else "neg" if v["delta"] > 0 else ""
    if key.endswith("_rate"):
        return [_e(name), _pct(v["a"]), _pct(v["b"]), f'<span class="{cls}">{_signed_pct(v["delta"])}</span>']
    if key.startswith("mean_") and key != "mean_doubt_markers":
        cls = ""  # longer is not worse in itself
    return [_e(name), f"{v['a']:.1f}", f"{v['b']:.1f}", f'<span class="{cls}">{v["delta"]:+.1f}</span>']


def _cut(text: str) -> str:
    return text if len(text) <= RESPONSE_CHARS else "[… " + str(len(text) - RESPONSE_CHARS) + " characters cut …]\n" + text[-RESPONSE_CHARS:]


def _example(item: dict[str, Any], ra: dict[str, Any], rb: dict[str, Any], la: str, lb: str) -> str:
    def side(label: str, r: dict[str, Any]) -> str:
        tag = '<span class="tag ok">correct</span>' if r.get("correct") else '<span class="tag no">wrong</span>'
        answer = "none" if r.get("extracted") is None else f"<code>{_e(r['extracted'])}</code>"
        tools = (f" · {r['tool_calls']} programs ({r.get('tool_failures') or 0} failed, "
                 f"{r.get('tool_timeouts') or 0} timed out)" if r.get("tool_calls") else "")
        return (f"<div><b>{_e(label)}</b> {tag} <span class=note>answer: {answer}"
                f" · {_e(r.get('tokens'))} tokens{' · truncated' if r.get('truncated') else ''}{tools}</span>"
                f"<pre>{_e(_cut(str(r.get('response') or '')))}</pre></div>")

    cat = " · ".join(_e(x) for x in (item.get("subject"), item.get("level")) if x is not None)
    return (f"<details><summary><code>{_e(item['id'])}</code> {_e(item['problem'])}"
            f"{f' <span class=note>({cat})</span>' if cat else ''}</summary><div class=ex>"
            f"<p><b>Problem.</b></p><pre>{_e(ra.get('problem') or rb.get('problem'))}</pre>"
            f"<p><b>Gold answer:</b> <code>{_e(ra.get('gold'))}</code></p>"
            f"<div class=side>{side(la, ra)}{side(lb, rb)}</div></div></details>")


def comparison_section(a: Run, b: Run, la: str, lb: str, examples: int = EXAMPLES) -> str:
    c = compare_runs(a, b)
    cards = [("Shared problems", str(c["shared"])),
             (f"Accuracy {la}", _pct(c["accuracy_a"]["value"])), (f"Accuracy {lb}", _pct(c["accuracy_b"]["value"])),
             ("Delta [95% CI]", f"{_delta_cell(c['delta'])}<div class=note>[{_signed_pct(c['delta_ci95'][0])}, "
                                f"{_signed_pct(c['delta_ci95'][1])}]</div>"),
             ("McNemar p", f"{c['mcnemar_p']:.3g}"), ("Fixed / broken", f"{c['fixed']} / {c['broken']}")]
    html_cards = "".join(f'<div class=card><div class=k>{_e(k)}</div><div class=v>{v}</div></div>' for k, v in cards)
    parts = [f"<section><h2>Paired comparison: {_e(la)} → {_e(lb)}</h2>",
             "".join(f"<p class=note>⚠ {_e(w)}</p>" for w in c["warnings"]), f"<div class=cards>{html_cards}</div>",
             "<p class=note>Paired on the greedy sample of each shared problem. Delta interval: Newcombe's "
             "paired hybrid score method; p-value: exact McNemar test on the discordant problems.</p>"]
    for key, what in (("by_subject", "subject"), ("by_level", "level")):
        if key in c:
            rows = [[_e(g), str(s["n"]), _pct(s["accuracy_a"]["value"]), _pct(s["accuracy_b"]["value"]),
                     _delta_cell(s["delta"]), f"{s['fixed']} / {s['broken']}", f"{s['mcnemar_p']:.3g}"]
                    for g, s in c[key].items()]
            parts.append(f"<h3>By {what}</h3>" + _table([what.capitalize(), "n", _e(la), _e(lb), "Delta",
                                                         "Fixed / broken", "McNemar p"], rows))
    diag_rows = [_diag_row(k, v) for k, v in c["diagnostics"].items()]
    parts.append("<h3>Diagnostics (shared problems, greedy)</h3>" + _table(["Measure", _e(la), _e(lb), "Change"], diag_rows))
    ga, gb = a.greedy(), b.greedy()
    for key, title in (("fixed_problems", f"Fixed: {la} wrong → {lb} right"),
                       ("broken_problems", f"Broken: {la} right → {lb} wrong")):
        items = c[key]
        shown = "".join(_example(it, ga[it["id"]], gb[it["id"]], la, lb) for it in items[:examples])
        more = f"<p class=note>showing {examples} of {len(items)}; <code>mathtune compare --json</code> lists all.</p>" if len(items) > examples else ""
        parts.append(f"<h3>{_e(title)} ({len(items)})</h3>{shown or '<p class=note>none</p>'}{more}")
    parts.append("</section>")
    return "".join(parts)


# ----------------------------------------------------------------------------- training runs

# (metrics.jsonl key, panel title) for RL runs; SFT/DPO runs show their loss
RL_PANELS = [("reward", "reward (weighted sum)"), ("reward_std", "reward std within groups"),
             ("frac_reward_zero_std", "share of groups with zero std (no signal)"),
             ("completions/mean_length", "mean completion length (tokens)")]


def read_train_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The logged rows of a training run (`metrics.jsonl`, written by mathtune train), one clear
    error when the directory is not a training run."""
    from ..errors import MathtuneError
    from ..files import read_jsonl

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise MathtuneError(f"{run_dir} is not a training run (no metrics.jsonl)",
                            "pass a run directory written by `mathtune train` (e.g. runs/train/NAME)")
    return [rec for _, rec, err in read_jsonl(path) if err is None and isinstance(rec, dict)]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(float(r["step"]), float(r[key])) for r in rows
           if isinstance(r.get(key), int | float) and isinstance(r.get("step"), int | float)]
    return [x for x, _ in pts], [y for _, y in pts]


def training_chart(labels: list[str], runs: list[list[dict[str, Any]]], keys: list[tuple[str, str]]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys, strict=True):
        for i, (label, rows) in enumerate(zip(labels, runs, strict=True)):
            xs, ys = _series(rows, key)
            if xs:
                ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], linewidth=1.6, label=label, alpha=0.9)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _png(fig)


def completions_table(label: str, run_dir: Path) -> str:
    """The last logged step's sampled completions of an RL run (`completions/step-N.jsonl`)."""
    from ..files import read_jsonl

    steps = sorted((run_dir / "completions").glob("step-*.jsonl"))
    if not steps:
        return ""
    rows = [r for _, r, err in read_jsonl(steps[-1]) if err is None and isinstance(r, dict)]
    body = [[f"<pre>{_e(_cut(str(r.get('completion', ''))))}</pre>", _e(r.get("extracted")), _e(r.get("gold")),
             _e(", ".join(f"{k} {v}" for k, v in (r.get("reward") or {}).items()))] for r in rows]
    return (f"<h3>{_e(label)}: sampled completions at step {rows[0].get('step') if rows else '?'}</h3>"
            + _table(["completion", "extracted", "gold", "reward"], body))


def training_section(train_runs: list[tuple[str, list[dict[str, Any]]]], dirs: list[Path]) -> str:
    """Curves of training runs side by side: reward, its per-function parts, signal and length for
    RL runs (stage grpo), the loss otherwise, plus a table of the last logged values."""
    labels = [la for la, _ in train_runs]
    rows = [r for _, r in train_runs]
    rl = any(any("reward" in x for x in r) for r in rows)
    parts = ["<section><h2>Training runs</h2>"]
    if rl:
        parts.append(f'<img class=chart alt="RL curves" src="{training_chart(labels, rows, RL_PANELS)}">')
        names = sorted({k[len("rewards/"):-len("/mean")] for r in rows for x in r for k in x
                        if k.startswith("rewards/") and k.endswith("/mean")})
        if names:
            keys = [(f"rewards/{n}/mean", f"reward: {n}") for n in names]
            parts.append(f'<img class=chart alt="reward functions" src="{training_chart(labels, rows, keys)}">')
    else:
        parts.append(f'<img class=chart alt="loss" src="{training_chart(labels, rows, [("loss", "training loss")])}">')
    table = []
    for label, r in train_runs:
        last = {k: v for x in r for k, v in x.items()}  # the last value of every key
        table.append([_e(label), str(int(last.get("step", 0))), *[
            f"{last[k]:.3g}" if isinstance(last.get(k), int | float) else "–"
            for k in ("reward", "reward_std", "frac_reward_zero_std", "loss")]])
    parts.append(_table(["run", "steps", "last reward", "reward std", "zero-std groups", "loss"], table))
    for label, run_dir in zip(labels, dirs, strict=True):
        parts.append(completions_table(label, run_dir))
    parts.append("<p class=note>Curves from each run's <code>metrics.jsonl</code> (one row per logged step). "
                 "A gain means little without its control run (e.g. <code>rewards: {random: 1.0}</code>), "
                 "trained with the same budget.</p></section>")
    return "".join(parts)


# ----------------------------------------------------------------------------- document


def _sections(runs: list[Run], labels: list[str], metrics: list[dict[str, Any]], examples: int) -> list[str]:
    body = [
        summary_section(labels, runs, metrics),
        categories_section(labels, metrics),
        diagnostics_section(labels, runs, metrics),
    ]
    if len(runs) >= 2:
        body.append(comparison_section(runs[0], runs[-1], labels[0], labels[-1], examples))
    return body


def build_report(runs: list[Run], title: str = "mathtune evaluation report", examples: int = EXAMPLES,
                 train_runs: list[str | Path] = ()) -> str:
    """The report as one HTML string (see the module docstring); `train_runs` are training run
    directories whose curves are shown (RL runs: reward, signal, length)."""
    import matplotlib

    from .. import __version__

    labels = _labels(runs)
    metrics = [r.full_metrics() for r in runs]
    run_list = "".join(f"<li><b>{_e(la)}</b>: <code>{_e(r.path)}</code></li>" for la, r in zip(labels, runs, strict=True))
    warnings = "".join(f"<p class=note>⚠ {_e(w)}</p>" for r in runs for w in r.warnings)
    trained = [(Path(t).name, read_train_metrics(t)) for t in train_runs]
    labels_t = [la for la, _ in trained]
    if len(set(labels_t)) < len(labels_t):  # same leaf names: label by the parent too
        trained = [(f"{Path(t).parent.name}/{Path(t).name}", rows) for t, (_, rows) in zip(train_runs, trained,
                                                                                          strict=True)]
    with matplotlib.rc_context(CHART_STYLE):
        body = _sections(runs, labels, metrics, examples)
        if trained:
            body.append(training_section(trained, [Path(t) for t in train_runs]))
    header = (
        f"<header><h1>{_e(title)}</h1><div class=meta>generated {dt.datetime.now():%Y-%m-%d %H:%M} by "
        f"mathtune {_e(__version__)} · {len(runs)} run{'s' if len(runs) > 1 else ''}</div>"
        f"<ul class=meta>{run_list}</ul>{warnings}</header>"
    )
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body><main>{header}{''.join(body)}"
            "<footer>Self-contained report: no external resources.</footer></main></body></html>\n")


def write_report(runs: list[Run], out: str | Path | None = None, title: str = "mathtune evaluation report",
                 examples: int = EXAMPLES, train_runs: list[str | Path] = ()) -> Path:
    """Build the report and write it atomically (default: report.html in the last run's directory)."""
    path = Path(out) if out is not None else runs[-1].path / "report.html"
    return atomic_write_text(path, build_report(runs, title, examples, train_runs))
