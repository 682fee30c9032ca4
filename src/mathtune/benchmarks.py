"""The one benchmark registry: where each benchmark lives, how its fields map, how it is graded.

Evaluation scores these problems and decontamination removes training examples that match
them, so both read them here, through `load_problems`, and always see the same texts.

    from mathtune.benchmarks import get_benchmark, load_problems
    spec = get_benchmark("gsm8k")
    problems = load_problems(spec, data_dir="DIR", limit=8)     # DIR/gsm8k/test.jsonl
    problems = load_problems(spec)                              # $MATHTUNE_DATA, else the Hub

A `BenchmarkSpec` names a Hub source (dataset id, config, split) and a local file
(`<data dir>/<name>/test.jsonl`), the field mapping (problem, answer, optional
id/subject/level/solution), the kind of gold answer, the grader's extractor order, the default
prompt style and a `version` bumped whenever any of these change, so results from different
versions are never compared silently. Any JSONL file works too:
`spec_for_file("my/test.jsonl", "problem=question,answer=answer")`.

Records whose problem text is empty are skipped with a warning that names them (eval and
decontamination skip the same ones). Without network the Hub loader fails at once, with one
error that names the benchmark and the fix, instead of retrying for tens of seconds.
"""

from __future__ import annotations

import functools
import math
import os
import re
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from .errors import MathtuneError, unknown_name_error
from .files import read_jsonl

AnswerKind = Literal["gsm8k_solution", "boxed_solution", "number", "latex", "auto"]
Split = Literal["test", "train"]
DATA_ENV = "MATHTUNE_DATA"
OFFLINE_HINT = f"pass --data-dir DIR (or set {DATA_ENV}=DIR) with the benchmark files laid out as DIR/<name>/test.jsonl"


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
    index: int  # the record's position in its file or Hub split
    problem: str
    gold: str
    subject: str | None = None
    level: int | str | None = None
    solution: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


BOXED = ("boxed", "final_answer", "answer_is", "therefore", "last_math", "last_number")
NUMERIC = ("boxed", "gsm8k", "final_answer", "answer_is", "therefore", "last_math", "last_number")

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
            "math", "Hendrycks MATH, full test split (5000, all seven subjects)",
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


def list_benchmarks() -> Iterable[BenchmarkSpec]:
    return BENCHMARKS.values()


def names() -> Sequence[str]:
    return sorted(BENCHMARKS)


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
    *,
    split: Split = "test",
    missing_local: Literal["error", "hub"] = "error",
) -> list[Problem]:
    """A benchmark's problems, from its explicit file, the data dir (`data_dir`, else
    $MATHTUNE_DATA) or the Hub. `split="train"` gives the few-shot pool where the benchmark has
    one. When a data dir is set but lacks the file: an error, or the Hub with missing_local="hub"."""
    rows, fields, where = _rows(spec, split, data_dir_from_env(data_dir), missing_local)
    problems: list[Problem] = []
    empty: list[int] = []
    for i, row in enumerate(rows):
        p = _to_problem(spec, fields, i, row, where)
        if p.problem:
            problems.append(p)
        else:
            empty.append(i + 1)
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        print(f"mathtune: warning: benchmark {spec.name!r} ({where}): skipped {len(empty)} record(s) with an "
              f"empty problem text: record {shown}", file=sys.stderr)
    if not problems:
        raise MathtuneError(f"benchmark {spec.name!r} ({where}) has no problems", "check the file or the field mapping")
    return problems[:limit] if limit else problems


def _rows(
    spec: BenchmarkSpec, split: Split, directory: Path | None, missing_local: str
) -> tuple[list[Mapping[str, Any]], FieldMap, str]:
    """(records, field map, where they came from) for one split of a benchmark."""
    if spec.path:
        if split != "test":
            raise MathtuneError(f"benchmark {spec.name!r} ({spec.path}) has no {split} split", "use the test split")
        return _read_local(Path(spec.path)), spec.fields, spec.path
    rel = spec.file if split == "test" else spec.train_file
    hub_split = (spec.hub.split if split == "test" else spec.hub.train_split) if spec.hub else None
    if directory is not None:
        path = directory / rel if rel else None
        if path is not None and path.is_file():
            return _read_local(path), spec.fields, str(path)
        if missing_local == "error" or hub_split is None:
            raise MathtuneError(
                f"benchmark {spec.name!r}: {rel or f'a {split} split'} not found in the data dir {directory}",
                f"lay files out as <data dir>/{rel or spec.file}, or drop --data-dir/{DATA_ENV} to load from the Hub",
            )
    if spec.hub is None or hub_split is None:
        raise MathtuneError(f"benchmark {spec.name!r} has no {split} split on the Hub", OFFLINE_HINT)
    return _read_hub(spec.name, spec.hub, hub_split), spec.hub.fields or spec.fields, f"hub:{spec.hub.path}"


def _read_local(path: Path) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    bad: list[str] = []
    for lineno, rec, err in read_jsonl(path):
        if err:
            bad.append(f"line {lineno}: {err}")
            continue
        rows.append(rec)  # type: ignore[arg-type]
    if bad:
        print(f"mathtune: warning: {path}: skipped {len(bad)} malformed line(s): {'; '.join(bad[:3])}", file=sys.stderr)
    return rows


def _offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (one quick TCP probe per process), or None.

    Without network `datasets` retries each request with back-off for tens of seconds before
    it gives up; probing once first turns that into an immediate error. The probe goes to the
    HTTPS proxy when one is set. With HF_HUB_OFFLINE=1 nothing is probed: `datasets` answers
    from its cache."""
    if _offline_mode():
        return None
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(v)), None)
    target = proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(target if "://" in target else f"http://{target}")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        return f"the Hugging Face Hub is unreachable ({'proxy ' if proxy else ''}{host}:{port}: {e})"
    return None


def _read_hub(name: str, hub: HubSource, split: str) -> list[Mapping[str, Any]]:
    where = f"{hub.path}{', config ' + hub.config if hub.config else ''}, split {split}"
    reason = hub_unreachable()
    if reason:
        raise MathtuneError(
            f"cannot load benchmark {name!r} from the Hugging Face Hub ({where}): {reason}",
            f"{OFFLINE_HINT}; or, offline with the dataset in the HF cache, set HF_HUB_OFFLINE=1",
        )
    try:
        from datasets import load_dataset

        ds = load_dataset(hub.path, hub.config, split=split)
    except Exception as e:  # renamed, gated, cut off mid-way: one clear message
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise MathtuneError(
            f"cannot load benchmark {name!r} from the Hugging Face Hub ({where}): {detail}",
            f"check your connection, or {OFFLINE_HINT}",
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
    parts = [_text(_field(row, f, spec, where, index)) for f in fields.problem]
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


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


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
    from .grading import gold_answer

    return gold_answer(text)
