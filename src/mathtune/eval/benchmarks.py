"""Benchmarks as data: where each one lives, how its fields map, how its answers are graded.

    from mathtune.eval.benchmarks import get_benchmark, load_problems
    spec = get_benchmark("gsm8k")
    problems = load_problems(spec, data_dir="../shared/data/benchmarks", limit=8)

A `BenchmarkSpec` names a Hub source (dataset id, config, split) and a local file
(`<data dir>/<name>/test.jsonl`, the layout of ../shared/data/benchmarks), the field mapping
(problem, answer, optional id/subject/level/solution), the kind of gold answer, the grader's
extractor order, the default prompt style and a `version` bumped whenever any of these change,
so results from different versions are never compared silently.

Loading: from `data_dir` (or $MATHTUNE_DATA) when given, else from the Hugging Face Hub. Any JSONL
file works too: `spec_for_file("my/test.jsonl", "problem=question,answer=answer")`.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import MathtuneError, unknown_name_error
from ..files import read_jsonl

AnswerKind = Literal["gsm8k_solution", "boxed_solution", "number", "latex", "auto"]
DATA_ENV = "MATHTUNE_DATA"


@dataclass(frozen=True)
class FieldMap:
    """Which record fields hold what. `problem` may join several fields (SVAMP: Body + Question)."""

    problem: tuple[str, ...]
    answer: str
    id: str | None = None
    subject: str | None = None
    level: str | None = None
    solution: str | None = None

    @classmethod
    def parse(cls, text: str) -> FieldMap:
        """`problem=question,answer=answer[,id=..,subject=..,level=..,solution=..]`; `problem=a+b` joins fields."""
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise MathtuneError(f"bad field mapping {item!r}", "write --fields problem=question,answer=answer")
            pairs[key.strip()] = value.strip()
        known = {"problem", "answer", "id", "subject", "level", "solution"}
        for key in pairs:
            if key not in known:
                raise unknown_name_error("field mapping key", key, known)
        for need in ("problem", "answer"):
            if need not in pairs:
                raise MathtuneError(f"--fields is missing {need}=<field>", "write --fields problem=question,answer=answer")
        return cls(problem=tuple(pairs.pop("problem").split("+")), **pairs)


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    split: str
    fields: FieldMap | None = None  # when the Hub copy names its fields differently
    train_split: str | None = None  # few-shot exemplars


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    description: str
    hub: HubSource | None
    file: str  # relative to the data dir
    fields: FieldMap
    answer_kind: AnswerKind
    extract: tuple[str, ...]  # grader extractor order
    prompt: str = "chat-boxed"
    version: int = 1
    train_file: str | None = None  # few-shot exemplars, relative to the data dir
    path: str | None = None  # an explicit JSONL file (custom benchmarks)


@dataclass(frozen=True)
class Problem:
    id: str
    index: int
    problem: str
    gold: str
    subject: str | None = None
    level: int | str | None = None
    solution: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


BOXED = ("boxed", "final_answer", "answer_is", "therefore", "last_number")
NUMERIC = ("boxed", "gsm8k", "final_answer", "answer_is", "therefore", "last_number")

BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in [
        BenchmarkSpec(
            "gsm8k", "grade-school word problems (1319 test)",
            HubSource("openai/gsm8k", "main", "test", train_split="train"),
            "gsm8k/test.jsonl", FieldMap(("question",), "answer", solution="answer"),
            "gsm8k_solution", NUMERIC, train_file="gsm8k/train.jsonl",
        ),
        BenchmarkSpec(
            "math", "Hendrycks MATH, full test split (5000)",
            HubSource("DigitalLearningGmbH/MATH-lighteval", "default", "test", train_split="train"),
            "math/test.jsonl", FieldMap(("problem",), "solution", id="idx", subject="type", level="level", solution="solution"),
            "boxed_solution", BOXED,
        ),
        BenchmarkSpec(
            "math500", "MATH-500 (PRM800K test subset)",
            HubSource("HuggingFaceH4/MATH-500", None, "test"),
            "math500/test.jsonl",
            FieldMap(("problem",), "answer", id="unique_id", subject="subject", level="level", solution="solution"),
            "latex", BOXED,
        ),
        BenchmarkSpec(
            "gsm-hard", "GSM8K with larger numbers (PAL)",
            HubSource("reasoning-machines/gsm-hard", None, "train"),
            "gsm_hard/test.jsonl", FieldMap(("input",), "target"), "number", NUMERIC,
        ),
        BenchmarkSpec(
            "svamp", "SVAMP arithmetic word problems (1000)",
            HubSource("ChilleD/SVAMP", None, "test"),
            "svamp/test.jsonl", FieldMap(("Body", "Question"), "Answer", id="ID", subject="Type"), "number", NUMERIC,
        ),
        BenchmarkSpec(
            "asdiv", "ASDiv word problems (2215)",
            HubSource("EleutherAI/asdiv", None, "validation"),
            "asdiv/test.jsonl", FieldMap(("body", "question"), "answer", subject="solution_type"), "number", NUMERIC,
        ),
        BenchmarkSpec(
            "mawps", "MAWPS word problems (2065: addsub, multiarith, singleeq, singleop)",
            HubSource("MU-NLPC/Calc-mawps", "original-splits", "test", fields=FieldMap(("question",), "result_float", id="id")),
            "mawps/test.jsonl", FieldMap(("input",), "target", subject="type"), "number", NUMERIC,
        ),
        BenchmarkSpec(
            "aime24", "AIME 2024 (30 problems, integer answers)",
            HubSource("HuggingFaceH4/aime_2024", None, "train"),
            "aime24/test.jsonl", FieldMap(("problem",), "answer", id="id", solution="solution"), "number", BOXED,
        ),
        BenchmarkSpec(
            "amc23", "AMC 2023 (40 problems)",
            HubSource("math-ai/amc23", None, "test", fields=FieldMap(("question",), "answer", id="id")),
            "amc23/test.jsonl", FieldMap(("problem",), "answer", id="id"), "number", BOXED,
        ),
    ]
}


def get_benchmark(name: str) -> BenchmarkSpec:
    """A registered benchmark by name (typos suggest the closest)."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise unknown_name_error(
            "benchmark", name, BENCHMARKS,
            hint=f"choose one of: {', '.join(sorted(BENCHMARKS))}, or pass a .jsonl path with --fields",
        ) from None


def spec_for_file(path: str | os.PathLike, fields: str | FieldMap | None = None) -> BenchmarkSpec:
    """A benchmark from any JSONL file, e.g. fields='problem=question,answer=answer'."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MathtuneError(f"benchmark file not found: {p}", "check the path, or use a registered benchmark name")
    fmap = FieldMap.parse(fields) if isinstance(fields, str) else fields or FieldMap(("problem",), "answer", id="id")
    name = p.parent.name if p.stem in ("test", "train", "validation") and p.parent.name else p.stem
    return BenchmarkSpec(name, f"local file {p}", None, p.name, fmap, "auto", NUMERIC, path=str(p.resolve()))


def resolve_benchmark(ref: str, fields: str | None = None) -> BenchmarkSpec:
    """A registered name, or a path to a .jsonl file (with an optional field mapping)."""
    if ref.endswith(".jsonl") or os.sep in ref or Path(ref).is_file():
        return spec_for_file(ref, fields)
    spec = get_benchmark(ref)
    return replace(spec, fields=FieldMap.parse(fields)) if fields else spec


# ------------------------------------------------------------------------ loading


def data_dir_from_env(data_dir: str | os.PathLike | None) -> Path | None:
    chosen = data_dir or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else None


def load_problems(
    spec: BenchmarkSpec,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """The benchmark's test problems, from a local file (explicit path or data dir) or the Hub."""
    directory = data_dir_from_env(data_dir)
    if spec.path:
        rows, fields, where = _read_local(Path(spec.path)), spec.fields, spec.path
    elif directory is not None:
        path = directory / spec.file
        if not path.is_file():
            raise MathtuneError(
                f"benchmark {spec.name!r}: {path} not found in the data dir {directory}",
                f"lay files out as <data dir>/{spec.file}, or drop --data-dir/{DATA_ENV} to load from the Hub",
            )
        rows, fields, where = _read_local(path), spec.fields, str(path)
    else:
        if spec.hub is None:
            raise MathtuneError(f"benchmark {spec.name!r} has no Hub source", "pass --data-dir")
        rows = _read_hub(spec.name, spec.hub, spec.hub.split)
        fields, where = spec.hub.fields or spec.fields, f"hub:{spec.hub.path}"
    problems = [_to_problem(spec, fields, i, row, where) for i, row in enumerate(rows)]
    if not problems:
        raise MathtuneError(f"benchmark {spec.name!r} ({where}) has no problems", "check the file")
    return problems[:limit] if limit else problems


def load_exemplars(spec: BenchmarkSpec, data_dir: str | os.PathLike | None, k: int) -> list[tuple[str, str, str]]:
    """k few-shot (problem, solution, answer) triples: the first k of the benchmark's train split
    when it has one (locally or on the Hub), else the fixed `FIXED_EXEMPLARS`."""
    if k <= 0:
        return []
    directory = data_dir_from_env(data_dir)
    rows: list[Mapping[str, Any]] = []
    fields = spec.fields
    try:
        if directory is not None and spec.train_file and (directory / spec.train_file).is_file():
            rows = _read_local(directory / spec.train_file, limit=k)
        elif directory is None and spec.hub and spec.hub.train_split:
            rows = _read_hub(spec.name, spec.hub, spec.hub.train_split)[:k]
            fields = spec.hub.fields or spec.fields
    except MathtuneError:
        rows = []
    out = []
    for i, row in enumerate(rows[:k]):
        p = _to_problem(spec, fields, i, row, "train split")
        out.append((p.problem, clean_solution(p.solution or ""), p.gold))
    return out or list(FIXED_EXEMPLARS[:k])


def clean_solution(text: str) -> str:
    """Drop GSM8K calculator annotations (<<48/2=24>>) and its '#### N' answer line."""
    text = re.sub(r"<<[^>]*>>", "", text)
    return re.sub(r"\n?####.*$", "", text.strip(), flags=re.DOTALL).strip()


# Fixed few-shot exemplars for benchmarks without a train split (written for mathtune).
FIXED_EXEMPLARS: tuple[tuple[str, str, str], ...] = (
    ("A shop sells pencils at 3 for $1. How many dollars do 12 pencils cost?",
     "12 pencils are 12 / 3 = 4 groups of 3 pencils. Each group costs $1, so they cost 4 * 1 = 4 dollars.", "4"),
    ("What is the value of $x$ if $3x - 7 = 11$?",
     "Add 7 to both sides: $3x = 18$. Divide by 3: $x = 6$.", "6"),
    ("Tom has 5 boxes with 8 apples each. He gives away 13 apples. How many apples does he have left?",
     "He starts with 5 * 8 = 40 apples. After giving away 13 he has 40 - 13 = 27 apples.", "27"),
    ("Simplify $\\frac{2}{3} + \\frac{1}{6}$.",
     "Write $\\frac{2}{3} = \\frac{4}{6}$. Then $\\frac{4}{6} + \\frac{1}{6} = \\frac{5}{6}$.", "\\frac{5}{6}"),
    ("How many positive divisors does 36 have?",
     "$36 = 2^2 \\cdot 3^2$, so it has $(2+1)(2+1) = 9$ positive divisors.", "9"),
    ("A rectangle has perimeter 30 and length 9. What is its area?",
     "The width is 30 / 2 - 9 = 6, so the area is 9 * 6 = 54.", "54"),
    ("What is the remainder when 2^10 is divided by 7?",
     "2^3 = 8 leaves remainder 1, so 2^9 leaves 1 and 2^10 leaves 2.", "2"),
    ("Sara reads 15 pages a day. How many days does she need for a 200-page book?",
     "200 / 15 = 13.33..., so after 13 days 5 pages are left and she needs 14 days.", "14"),
)


def _read_local(path: Path, limit: int | None = None) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    bad: list[str] = []
    for lineno, rec, err in read_jsonl(path):
        if err:
            bad.append(f"line {lineno}: {err}")
            continue
        rows.append(rec)  # type: ignore[arg-type]
        if limit and len(rows) >= limit:
            break
    if bad:
        print(f"mathtune: warning: {path}: skipped {len(bad)} malformed line(s): {'; '.join(bad[:3])}", file=sys.stderr)
    return rows


def _read_hub(name: str, hub: HubSource, split: str) -> list[Mapping[str, Any]]:
    try:
        from datasets import load_dataset

        ds = load_dataset(hub.path, hub.config, split=split)
    except Exception as e:  # offline, renamed, gated: one clear message
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise MathtuneError(
            f"cannot load benchmark {name!r} from the Hugging Face Hub ({hub.path}, split {split}): {detail}",
            f"connect to the internet, or pass --data-dir DIR (or set {DATA_ENV}) holding {name}'s test.jsonl",
        ) from None
    return list(ds)


def _field(row: Mapping[str, Any], key: str, spec: BenchmarkSpec, where: str, index: int) -> Any:
    if key not in row:
        raise MathtuneError(
            f"benchmark {spec.name!r} ({where}), record {index + 1} has no field {key!r}; it has: {', '.join(map(str, row))}",
            "fix the field mapping, e.g. --fields problem=question,answer=answer",
        )
    return row[key]


def _to_problem(spec: BenchmarkSpec, fields: FieldMap, index: int, row: Mapping[str, Any], where: str) -> Problem:
    parts = [str(_field(row, f, spec, where, index)).strip() for f in fields.problem]
    raw_answer = _field(row, fields.answer, spec, where, index)
    ident = row.get(fields.id) if fields.id else None
    return Problem(
        id=str(ident) if ident is not None else f"{spec.name}-{index}",
        index=index,
        problem=_join(parts),
        gold=gold_from(raw_answer, spec.answer_kind),
        subject=str(row[fields.subject]) if fields.subject and row.get(fields.subject) is not None else None,
        level=_level(row.get(fields.level)) if fields.level else None,
        solution=str(row[fields.solution]) if fields.solution and row.get(fields.solution) is not None else None,
        raw=row,
    )


def _join(parts: list[str]) -> str:
    """Join problem parts (SVAMP/ASDiv body + question), ending each sentence with a period."""
    out = ""
    for part in filter(None, parts):
        if out and not out.rstrip().endswith((".", "?", "!", ":")):
            out = out.rstrip() + "."
        out = f"{out} {part}" if out else part
    return out


def _level(value: Any) -> int | str | None:
    if value is None:
        return None
    m = re.fullmatch(r"(?:Level\s*)?(\d+)", str(value).strip())
    return int(m.group(1)) if m else str(value)


def format_number(value: float) -> str:
    """27.0 -> '27', 2.5 -> '2.5', 1e-7 -> '1e-07' (no float noise such as 0.30000000000000004)."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 10))


def gold_from(raw: Any, kind: AnswerKind) -> str:
    """The gold answer string from a benchmark's answer field."""
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, (int, float)):
        return format_number(float(raw))
    text = str(raw).strip()
    if kind in ("number", "auto"):
        unitless = re.sub(r"\s*\([^()]*\)\s*$", "", text)  # ASDiv: "9 (apples)"
        try:
            return format_number(float(unitless.replace(",", "")))
        except ValueError:
            if kind == "number":
                return unitless
    from ..grading import gold_answer

    return gold_answer(text)


def list_benchmarks() -> Iterable[BenchmarkSpec]:
    return BENCHMARKS.values()


def names() -> Sequence[str]:
    return sorted(BENCHMARKS)
