"""Grader regression corpus builder (issue #15): real model outputs + reference + perturbed rows,
graded by mathtune and Math-Verify side by side; disagreements written out for adjudication.

    .venv/bin/python benchmarks/grading_corpus.py generate            # run the eval plan (~40 CPU-minutes)
    .venv/bin/python benchmarks/grading_corpus.py generate --only smol_gsm8k_fewshot
    .venv/bin/python benchmarks/grading_corpus.py candidates          # collect + grade every row
    .venv/bin/python benchmarks/grading_corpus.py status              # which candidates lack a verdict

`generate` runs `mathtune eval` once per entry of `PLAN` (models x benchmarks x prompt styles x
greedy/sampled) into <work>/runs/<name> (default work dir /tmp/corpus); runs are resumable.
`candidates` reads those predictions, adds the datasets' own reference solutions and perturbed
answers (equivalent rewrites, expected true; wrong values, expected false), grades every row
with `mathtune.grading.grade(response, gold).correct` and with Math-Verify
(`verify(parse("$gold$"), parse(response))`), and writes <work>/candidates.jsonl plus
<work>/disagreements.jsonl (the rows the two graders disagree on, or where a grader failed).
Verdicts already adjudicated in tests/data/grading_corpus.jsonl (keyed by `source`) are carried
over; `status` lists the candidates that still need a human verdict. The adjudicated corpus,
tests/data/grading_corpus.jsonl, is committed data: each row has gold, response, expected,
model, benchmark, kind, source, reason.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MATHTUNE_SHARED_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))
WORK = Path(os.environ.get("CORPUS_WORK", "/tmp/corpus"))
CORPUS = REPO / "tests" / "data" / "grading_corpus.jsonl"
MODELS = {"smol": "smollm2-135m-instruct", "qwen": "qwen2.5-coder-0.5b-instruct"}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_corpus_rows import (  # noqa: E402
    gold_kind,
    hard_rows,
    last_boxed,
    number_text,
    perturbed_rows,
    reference_rows,
)

KEYS = ("gold", "response", "expected", "model", "benchmark", "kind", "source", "reason")


# ----------------------------------------------------------------------------- generation plan


@dataclass(frozen=True)
class Run:
    """One `mathtune eval` run: model key, benchmark, prompt style, sampling, limit."""

    name: str
    model: str  # key of MODELS
    benchmark: str
    prompt: str
    limit: int
    max_new_tokens: int = 384
    temperature: float = 0.0
    samples: int = 1
    fewshot: int = 0
    slice: bool = False  # read the stratified MATH slice (<work>/slices), not the first N rows

    def args(self, data_dir: Path, out: Path) -> list[str]:
        cmd = [str(REPO / ".venv" / "bin" / "mathtune"), "eval", "--model", MODELS[self.model],
               "--benchmark", self.benchmark, "--data-dir", str(data_dir), "--limit", str(self.limit),
               "--prompt", self.prompt, "--max-new-tokens", str(self.max_new_tokens), "--no-progress",
               "--seed", "0", "-o", str(out)]
        if self.temperature > 0:
            cmd += ["--temperature", str(self.temperature), "--top-p", "0.95", "--samples", str(self.samples)]
        if self.fewshot:
            cmd += ["--fewshot", str(self.fewshot)]
        return cmd


# ~40 CPU-minutes in all, measured on a shared 2-core AVX2 machine: SmolLM2 costs ~2-4 CPU-s per
# response at 256-384 new tokens (sampled runs rarely stop early, so cost more), Qwen ~4x that.
PLAN: tuple[Run, ...] = (
    Run("smol_math500_boxed", "smol", "math500", "chat-boxed", 100),
    Run("smol_math_boxed_t07", "smol", "math", "chat-boxed", 100, temperature=0.7, slice=True),
    Run("smol_gsm8k_fewshot", "smol", "gsm8k", "gsm8k", 60, max_new_tokens=256, fewshot=4),
    Run("smol_svamp_chat", "smol", "svamp", "chat", 40, max_new_tokens=256),
    Run("smol_gsm8k_chat_t07", "smol", "gsm8k", "chat", 30, max_new_tokens=256, temperature=0.7),
    Run("smol_amc23_cot", "smol", "amc23", "cot", 40, max_new_tokens=320),
    Run("smol_aime24_cot", "smol", "aime24", "cot", 30, max_new_tokens=320),
    Run("smol_math_cot", "smol", "math", "cot", 30, max_new_tokens=320, slice=True),
    Run("qwen_math500_boxed", "qwen", "math500", "chat-boxed", 40),
    Run("qwen_math_boxed", "qwen", "math", "chat-boxed", 25, slice=True),
    Run("qwen_gsm8k_chat_t07", "qwen", "gsm8k", "chat", 25, max_new_tokens=320, temperature=0.7),
    Run("qwen_svamp_cot", "qwen", "svamp", "cot", 15, max_new_tokens=256),
)

# How many MATH test problems of each gold kind go into the slice (the rest of the 5000 are
# mostly integers): broad answer-kind coverage from real outputs.
SLICE_QUOTA = {"integer": 30, "fraction": 18, "expression": 18, "tuple": 10, "interval": 8, "matrix": 8,
               "set": 8, "decimal": 6, "equation": 6, "text": 5, "other": 3}


def build_math_slice(work: Path) -> Path:
    """A stratified, shuffled (seed 15) slice of the MATH test split as <work>/slices/math/test.jsonl,
    laid out like the shared data dir so `mathtune eval --benchmark math --data-dir` reads it."""
    rows = [json.loads(line) for line in (DATA / "math" / "test.jsonl").open()]
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        gold = last_boxed(row["solution"]) or ""
        by_kind.setdefault(gold_kind(gold, row["problem"]), []).append(row)
    rng = random.Random(15)
    picked = [r for kind, n in SLICE_QUOTA.items() for r in rng.sample(by_kind.get(kind, []), min(n, len(by_kind.get(kind, []))))]
    rng.shuffle(picked)
    out = work / "slices" / "math" / "test.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in picked))
    tmp.replace(out)
    return out.parent.parent


def generate(work: Path, only: list[str] | None) -> None:
    """Run every planned `mathtune eval` (resumable: finished records are skipped)."""
    slice_dir = build_math_slice(work)
    for run in PLAN:
        if only and run.name not in only:
            continue
        cmd = run.args(slice_dir if run.slice else DATA, work / "runs" / run.name)
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)



# ----------------------------------------------------------------------------- model rows


def _dataset_golds(work: Path, run: Run) -> list[tuple[str, str]]:
    """(gold as the dataset gives it, corpus reference) per problem index of a run."""
    rows = [json.loads(x) for x in ((work / "slices" if run.slice else DATA) / run.benchmark / "test.jsonl").open()]
    if run.benchmark == "math":
        return [(last_boxed(r["solution"]) or "", f"math#{r['idx']}") for r in rows]
    field = {"gsm8k": "answer", "math500": "answer", "svamp": "Answer", "aime24": "answer", "amc23": "answer"}[run.benchmark]
    golds = [r[field].split("####")[-1].strip() if run.benchmark == "gsm8k" else number_text(r[field]) for r in rows]
    return [(g, f"{run.benchmark}#{i}") for i, g in enumerate(golds)]


def model_rows(work: Path) -> list[dict]:
    """Every (problem, sample) response of every planned run found under <work>/runs."""
    out = []
    for run in PLAN:
        path = work / "runs" / run.name / "predictions.jsonl"
        if not path.exists():
            continue
        golds = _dataset_golds(work, run)
        style = f"{run.prompt} {run.fewshot}-shot" if run.fewshot else run.prompt
        for line in path.open():
            rec = json.loads(line)
            gold, ref = golds[rec["index"]]
            mode = "greedy" if run.temperature == 0 else f"T={run.temperature} s{rec['sample']}"
            out.append({"gold": gold, "response": rec["response"], "expected": None, "model": MODELS[run.model],
                        "benchmark": run.benchmark, "kind": gold_kind(gold, rec["problem"]),
                        "source": f"{MODELS[run.model].split('-')[0]} {mode} {style} {ref}", "reason": "",
                        "problem": rec["problem"], "truncated": bool(rec.get("truncated"))})
    return out


# ----------------------------------------------------------------------------- both graders


def grade_mathtune(rows: list[dict]) -> None:
    """mathtune's verdict per row (mt, mt_extracted, mt_status); mt=None where grading raised."""
    from mathtune.grading import grade, grade_many

    pairs = [(r["response"], r["gold"]) for r in rows]
    try:
        grades = grade_many(pairs, workers=1)
    except Exception:  # the API moves under us: fall back to one call per row
        grades = []
        for resp, gold in pairs:
            try:
                grades.append(grade(resp, gold))
            except Exception as e:
                grades.append(e)
    for r, g in zip(rows, grades, strict=True):
        if isinstance(g, Exception):
            r.update(mt=None, mt_extracted=None, mt_status=f"error: {type(g).__name__}: {g}"[:200])
        else:
            r.update(mt=bool(g.correct), mt_extracted=g.extracted, mt_status=g.status)


def grade_math_verify(rows: list[dict]) -> None:
    """Math-Verify's verdict per row: verify(parse('$gold$'), parse(response)) (mv, mv_pred)."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    for r in rows:
        try:
            gold, pred = parse(f"${r['gold']}$"), parse(r["response"])
            r.update(mv=bool(verify(gold, pred)), mv_pred=str(pred[-1]) if pred else None, mv_gold=str(gold[-1]) if gold else None)
        except Exception as e:
            r.update(mv=None, mv_pred=f"error: {type(e).__name__}", mv_gold=None)


def needs_review(r: dict) -> bool:
    """A human must read this row: the graders disagree or one failed, they contradict the
    verdict known by construction, or they call a model's response correct (rare for these
    small models, and exactly where a lucky last number would slip through)."""
    if r["mt"] is None or r["mv"] is None or r["mt"] != r["mv"]:
        return True
    if r["expected"] is None:
        return bool(r["mt"])
    return r["expected"] != r["mt"]


def auto_reason(r: dict) -> str:
    """The reason for a model row both graders call wrong (read in bulk: extracted answer vs gold)."""
    ans = r.get("mt_extracted")
    if ans is None:
        return "the response states no final answer (both graders agree)"
    ans = ans if len(ans) <= 60 else ans[:57] + "..."
    lead = "cut off at the token limit; its last answer-like text is" if r.get("truncated") else "its final answer is"
    return f"{lead} '{ans}', not the gold '{r['gold']}' (both graders agree)"


TEMPLATE_MARKS = ("(both graders agree)", "in another notation", "differs from the gold", "the dataset's own",
                  "with a unit or currency mark", "the response corrects", "the response rejects")


def is_template_reason(reason: str) -> bool:
    """A reason written by this script (graders' agreement, or the verdict known by construction),
    as opposed to one written by the person who read the row."""
    return any(m in reason for m in TEMPLATE_MARKS)


def load_verdicts(*paths: Path) -> dict[tuple[str, str], dict]:
    """Adjudicated verdicts keyed by (source, response): the committed corpus, then overrides."""
    out: dict[tuple[str, str], dict] = {}
    for path in paths:
        if path.exists():
            for line in path.open():
                if line.strip():
                    v = json.loads(line)
                    out[(v["source"], v.get("response", ""))] = v
                    out.setdefault((v["source"], ""), v)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Atomic: a temp file renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def candidates(work: Path) -> list[dict]:
    """Collect every row, grade with both graders, write candidates.jsonl + disagreements.jsonl."""
    rows = model_rows(work) + reference_rows(DATA) + perturbed_rows(DATA) + hard_rows(DATA)
    seen: set[str] = set()
    rows = [r for r in rows if not (r["source"] in seen or seen.add(r["source"]))]
    grade_mathtune(rows)
    grade_math_verify(rows)
    for r in rows:
        r["review"] = needs_review(r)
    write_jsonl(work / "candidates.jsonl", rows)
    write_jsonl(work / "disagreements.jsonl", [r for r in rows if r["review"]])
    return rows


def merge(work: Path, verdict_files: list[Path], corpus: Path) -> list[dict]:
    """Corpus rows = candidates with a verdict: adjudicated (verdict files, then the committed
    corpus), else the graders' shared verdict (for rows needing no review)."""
    verdicts = load_verdicts(corpus, *verdict_files)
    out = []
    for r in (json.loads(x) for x in (work / "candidates.jsonl").open()):
        v = verdicts.get((r["source"], r["response"])) or verdicts.get((r["source"], ""))
        if v is not None and r["review"] and is_template_reason(v["reason"]):
            v = None  # a row that now needs reading: an automatic verdict does not settle it
        if v is not None and v.get("response", r["response"]) == r["response"]:
            r["expected"], r["reason"] = v["expected"], v["reason"]
        elif r["review"]:
            continue  # not adjudicated yet
        elif r["expected"] is None:
            r["expected"], r["reason"] = r["mt"], auto_reason(r)
        out.append({k: r[k] for k in KEYS})
    write_jsonl(corpus, out)
    return out



def report(work: Path, corpus: Path) -> None:
    """Counts of the corpus by model/benchmark/kind, and how each grader does on it."""
    from collections import Counter

    rows = [json.loads(x) for x in corpus.open()] if corpus.exists() else []
    cands = {r["source"]: r for r in (json.loads(x) for x in (work / "candidates.jsonl").open())} if (work / "candidates.jsonl").exists() else {}
    print(f"{len(rows)} corpus rows; model-written: {sum(r['model'] in MODELS.values() for r in rows)}")
    for key in ("model", "benchmark", "kind", "expected"):
        print(f"  by {key}: " + ", ".join(f"{k}={n}" for k, n in Counter(r[key] for r in rows).most_common()))
    kinds = {"integer", "decimal", "fraction", "expression", "tuple", "interval", "set", "matrix", "equation", "text", "other"}
    bad = [n for n, r in enumerate(rows, 1) if tuple(r) != KEYS or r["kind"] not in kinds or not r["reason"]
           or not isinstance(r["expected"], bool) or r["model"] not in {*MODELS.values(), "reference", "perturbed"}]
    dup = len(rows) - len({r["source"] for r in rows})
    print(f"  malformed rows: {bad[:10] or 'none'}; duplicate sources: {dup}")
    missing = [s for s, c in cands.items() if c["review"] and s not in {r["source"] for r in rows}]
    print(f"  candidates needing a verdict: {len(missing)}")
    for name in ("mt", "mv"):
        scored = [r for r in rows if r["source"] in cands and cands[r["source"]][name] is not None]
        right = sum(cands[r["source"]][name] == r["expected"] for r in scored)
        print(f"  {name}: {right}/{len(scored)} verdicts match the adjudicated expected")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "candidates", "merge", "status"])
    ap.add_argument("--work", type=Path, default=WORK, help="work dir (runs, candidates); default /tmp/corpus")
    ap.add_argument("--only", nargs="*", help="generate: only these PLAN names")
    ap.add_argument("--verdicts", nargs="*", type=Path, default=[], help="merge: adjudication jsonl files {source, response, expected, reason}")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args(argv)
    if args.step == "generate":
        generate(args.work, args.only)
    elif args.step == "candidates":
        rows = candidates(args.work)
        print(f"{len(rows)} candidates, {sum(r['review'] for r in rows)} need review -> {args.work}/disagreements.jsonl")
    elif args.step == "merge":
        rows = merge(args.work, args.verdicts, args.corpus)
        print(f"{len(rows)} rows -> {args.corpus}")
    else:
        report(args.work, args.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
