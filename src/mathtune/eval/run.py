"""`mathtune eval`: model x benchmark x prompt style x sampling -> a run directory.

    mathtune eval --model smollm2-135m-instruct --benchmark gsm8k --data-dir ../shared/data/benchmarks --limit 200
    mathtune eval recipes/eval/smollm2_gsm8k_maj8.yaml limit=50

The run directory (default runs/eval/<model>-<benchmark>-<timestamp>) holds:

  config.yaml        the resolved `EvalConfig` (reloadable as a recipe)
  predictions.jsonl  one record per (problem, sample): id, index, benchmark, problem, gold, subject,
                     level, sample, prompt, response, extracted, correct, status, tokens,
                     truncated, time_s (+ finish_reason)
                     (+ retrieved: card/exemplar ids with --retrieve; tool_calls, tool_failures,
                     tool_timeouts, tool_limit_reached with --tools python)
  metrics.json       `mathtune.eval.metrics.compute_metrics(records)`
  retrieval.json     with --retrieve: the store, its size, what decontamination dropped
  run.json           model, benchmark + spec version, backend, timings, problems/s, tokens/s

Resumable: completed records are graded and appended in small chunks (flush + fsync) while the
model generates; a re-run with the same --output (or, without --output, the same command: the
newest unfinished run dir with the same settings is picked up) skips every (id, sample) already
on disk. Sampling seeds derive from (seed, problem id, sample), so a resumed run produces the
same records as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import Section, dump_recipe, load_recipe
from ..errors import MathtuneError
from ..files import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from ..models import DEFAULT_MODEL

# Settings that change what a record contains: a resumed run must match them.
RESULT_KEYS = ("model", "benchmark", "fields", "prompt", "fewshot", "system", "samples", "temperature",
               "top_p", "max_new_tokens", "seed", "extract", "retrieve", "retrieve_k", "cards", "exemplars",
               "tools", "max_tool_calls", "tool_timeout")


class EvalConfig(Section):
    """Everything `mathtune eval` needs; a recipe YAML holds any of these keys."""

    model: str = DEFAULT_MODEL
    benchmark: str = "gsm8k"
    fields: str | None = None  # field mapping for a .jsonl benchmark: problem=question,answer=answer
    data_dir: str | None = None  # local benchmark files (else $MATHTUNE_DATA, else the Hub)
    limit: int | None = None
    prompt: str | None = None  # prompt style; default: the benchmark's
    fewshot: int = 0
    system: str | None = None  # system message for chat styles
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int = 64
    backend: Literal["hf", "vllm", "openai"] = "hf"
    base_url: str | None = None  # openai backend
    api_key: str | None = None  # openai backend (default: $OPENAI_API_KEY)
    concurrency: int = 8  # openai backend: parallel requests
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    seed: int = 0
    extract: list[str] | None = None  # grader extractor order; default: the benchmark's
    output: str | None = None
    flush_every: int = 16  # records per durable append
    grade_workers: int | None = None
    retrieve: Literal["none", "cards", "exemplars"] = "none"  # retrieved facts/exemplars in the prompt
    retrieve_k: int = 3
    cards: list[str] | None = None  # extra formula-card files (YAML/JSONL/.tex) besides the shipped ones
    exemplars: str | None = None  # solved examples (dataset dir or file); default: the benchmark's train split
    tools: Literal["none", "python"] = "none"  # python: tool-integrated reasoning in the sandbox
    max_tool_calls: int = 4
    tool_timeout: float = 5.0  # seconds per program


@dataclass
class EvalResult:
    run_dir: Path
    metrics: dict[str, Any]
    run_info: dict[str, Any]
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)


def load_config(recipe: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    return load_recipe(EvalConfig, recipe, overrides)


# ------------------------------------------------------------------------ run directory


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name if os.sep in text else text).strip("-") or "run"


def _same_results(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    d = {k: f.default for k, f in EvalConfig.model_fields.items()}  # keys older runs lack
    return [k for k in RESULT_KEYS if a.get(k, d.get(k)) != b.get(k, d.get(k))]


def choose_run_dir(cfg: EvalConfig, root: Path = Path("runs/eval")) -> Path:
    """--output if given; else the newest unfinished run with the same settings; else a new one."""
    if cfg.output:
        return Path(cfg.output)
    base = f"{_slug(cfg.model)}-{_slug(cfg.benchmark)}"
    if root.is_dir():
        mine = cfg.model_dump(mode="json")
        for d in sorted(root.glob(f"{base}-*"), reverse=True):
            info = _read_json(d / "run.json")
            old = _read_yaml(d / "config.yaml")
            if old and info.get("status") != "complete" and not _same_results(old, mine):
                return d
    stamp = root / f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stamp, 1
    while path.exists():  # two runs started within one second
        n += 1
        path = stamp.with_name(f"{stamp.name}-{n}")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from ..config import load_yaml

    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_resume(run_dir: Path, cfg: EvalConfig) -> None:
    old = _read_yaml(run_dir / "config.yaml")
    if not old or not (run_dir / "predictions.jsonl").exists():
        return
    diff = _same_results(old, cfg.model_dump(mode="json"))
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in diff)
        raise MathtuneError(
            f"{run_dir} holds predictions made with different settings ({changes})",
            "pass a new --output directory, or the same settings to resume that run",
        )


def read_done(path: Path) -> list[dict[str, Any]]:
    """Records already on disk. A torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    return [rec for _, rec, err in read_jsonl(path) if rec is not None and not err]


class RecordWriter:
    """Grades finished completions and appends them durably in small chunks."""

    def __init__(self, path: Path, grade_fn: Callable[[list[tuple[str, str]]], list[Any]], flush_every: int) -> None:
        self.path, self.grade_fn, self.flush_every = path, grade_fn, max(1, flush_every)
        self.pending: list[dict[str, Any]] = []
        self.written: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        if len(self.pending) >= self.flush_every or time.monotonic() - self.last_flush > 30:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        grades = self.grade_fn([(r["response"], r["gold"]) for r in self.pending])
        for rec, g in zip(self.pending, grades, strict=True):
            rec.update(extracted=g.extracted, correct=bool(g.correct), status=g.status)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for rec in self.pending:
                f.write(json.dumps(_ordered(rec), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.written += self.pending
        self.pending = []
        self.last_flush = time.monotonic()


RECORD_KEYS = ("id", "index", "benchmark", "problem", "gold", "subject", "level", "sample", "prompt", "response",
               "extracted", "correct", "status", "tokens", "truncated", "time_s", "finish_reason")


def _ordered(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in RECORD_KEYS} | {k: v for k, v in rec.items() if k not in RECORD_KEYS}


# ------------------------------------------------------------------------ the run


def run_eval(cfg: EvalConfig, *, progress: bool = True, generator: Any = None) -> EvalResult:
    """Load -> build prompts -> generate (resumably) -> grade -> metrics -> save."""
    from ..benchmarks import load_problems, resolve_benchmark
    from ..generation import SamplingParams, stable_seed
    from ..grading import grade_many
    from ..prompts import get_style
    from .fewshot import load_exemplars
    from .metrics import compute_metrics

    t_start = time.time()
    spec = resolve_benchmark(cfg.benchmark, cfg.fields)
    problems = load_problems(spec, cfg.data_dir, cfg.limit)
    style = get_style(style_name(cfg, spec))
    extract = tuple(cfg.extract) if cfg.extract else spec.extract
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                            n=cfg.samples, seed=cfg.seed, stop=style.stop_strings)
    run_dir = choose_run_dir(cfg)
    _check_resume(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_recipe(cfg))
    pred_path = run_dir / "predictions.jsonl"

    wanted = {p.id for p in problems}
    done = [r for r in read_done(pred_path) if r.get("id") in wanted]
    done_keys = {(r["id"], r.get("sample", 0)) for r in done}
    todo = [p for p in problems if any((p.id, s) not in done_keys for s in range(cfg.samples))]

    session: dict[str, Any] = {"generated": 0, "tokens": 0, "gen_s": 0.0}
    if todo:
        gen = generator or _build_generator(cfg)
        tokenizer = getattr(gen, "tokenizer", None) or (_tokenizer_for(cfg) if style.chat else None)
        shots = [(q, style.completion(sol, ans)) for q, sol, ans in load_exemplars(spec, cfg.data_dir, cfg.fewshot)]
        prompts = [style.render(p.problem, tokenizer, fewshot=shots, system=cfg.system) for p in todo]
        extras: list[dict[str, Any]] = [{} for _ in todo]
        if cfg.retrieve != "none":
            from .retrieval import retrieval_prompts

            prompts, extras = retrieval_prompts(cfg, spec, todo, style, tokenizer, shots, run_dir)
        writer = RecordWriter(pred_path, lambda pairs: grade_many(pairs, workers=cfg.grade_workers, extract=extract),
                              cfg.flush_every)
        total = sum(1 for p in todo for s in range(cfg.samples) if (p.id, s) not in done_keys)

        def on_complete(i: int, s: int, comp: Any) -> None:
            p = todo[i]
            if (p.id, s) in done_keys:
                return  # a sample finished in an interrupted run: keep the first
            session["generated"] += 1
            session["tokens"] += comp.tokens
            writer.add({
                "id": p.id, "index": p.index, "benchmark": spec.name, "problem": p.problem, "gold": p.gold,
                "subject": p.subject, "level": p.level, "sample": s, "prompt": prompts[i], "response": comp.text,
                "tokens": comp.tokens, "truncated": comp.finish_reason == "length", "time_s": comp.time_s,
                "finish_reason": comp.finish_reason,
            } | extras[i] | getattr(comp, "extra", {}))
            bar.update(writer, session["generated"])

        bar = _Progress(total, len(done), progress, label=f"{_slug(cfg.model)} on {spec.name}")
        t0 = time.perf_counter()
        try:
            with bar:
                seeds = [stable_seed(p.id) for p in todo]
                if cfg.tools == "python":
                    from .tools import generate_with_tools

                    generate_with_tools(gen, prompts, params, seeds, on_complete, cfg)
                else:
                    gen.generate(prompts, params, on_complete=on_complete, seeds=seeds)
        finally:
            writer.flush()  # whatever finished is kept, even on Ctrl-C
            session["gen_s"] = time.perf_counter() - t0
            tuner = getattr(gen, "tuner", None)
            if tuner is not None and tuner.history:
                session["threads"] = sorted(set(tuner.history))
            if generator is None:
                gen.close()

    records = _final_records(pred_path, problems, cfg.samples)
    atomic_write_jsonl(pred_path, records + [r for r in read_done(pred_path) if r.get("id") not in wanted])
    metrics = compute_metrics(records, k=cfg.samples)
    atomic_write_json(run_dir / "metrics.json", metrics)
    info = _run_info(cfg, spec, problems, records, session, len(done), t_start)
    atomic_write_json(run_dir / "run.json", info)
    return EvalResult(run_dir, metrics, info, records)


def style_name(cfg: EvalConfig, spec: Any) -> str:
    """--prompt, else the benchmark's style (chat-tir in place of chat-boxed with --tools python)."""
    if cfg.prompt:
        return cfg.prompt
    return "chat-tir" if cfg.tools == "python" and spec.prompt == "chat-boxed" else spec.prompt


def _final_records(path: Path, problems: list[Any], samples: int) -> list[dict[str, Any]]:
    """One record per (problem, sample) of this selection, in benchmark order."""
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for r in read_done(path):
        by_key.setdefault((r.get("id"), r.get("sample", 0)), r)
    out = [by_key[(p.id, s)] for p in problems for s in range(samples) if (p.id, s) in by_key]
    missing = len(problems) * samples - len(out)
    if missing:
        raise MathtuneError(f"{missing} predictions are missing from {path}", "re-run the same command to finish the run")
    return out


def _run_info(cfg: EvalConfig, spec: Any, problems: list[Any], records: list[dict[str, Any]],
              session: dict[str, Any], resumed: int, t_start: float) -> dict[str, Any]:
    from .. import __version__

    gen_s = session["gen_s"]
    return {
        "status": "complete",
        "model": cfg.model,
        "benchmark": spec.name,
        "benchmark_version": spec.version,
        "benchmark_source": spec.path or (cfg.data_dir or os.environ.get("MATHTUNE_DATA") or
                                          (f"hub:{spec.hub.path}" if spec.hub else None)),
        "backend": cfg.backend,
        "prompt": style_name(cfg, spec),
        "problems": len(problems),
        "samples": cfg.samples,
        "records": len(records),
        "resumed_records": resumed,
        "generated_records": session["generated"],
        "generated_tokens": session["tokens"],
        "generation_s": round(gen_s, 2),
        "problems_per_s": round(session["generated"] / cfg.samples / gen_s, 4) if gen_s > 0 else None,
        "tokens_per_s": round(session["tokens"] / gen_s, 1) if gen_s > 0 else None,
        "wall_s": round(time.time() - t_start, 2),
        "cpu_threads_used": session.get("threads"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mathtune_version": __version__,
    }


def _build_generator(cfg: EvalConfig) -> Any:
    from ..generation import get_generator

    if cfg.backend == "hf":
        return get_generator("hf", cfg.model, batch_size=cfg.batch_size, dtype=cfg.dtype, device=cfg.device)
    if cfg.backend == "vllm":
        return get_generator("vllm", cfg.model, dtype=cfg.dtype)
    if not cfg.base_url:
        raise MathtuneError("--backend openai needs --base-url", "e.g. --base-url http://127.0.0.1:8000/v1")
    return get_generator("openai", cfg.model, base_url=cfg.base_url, api_key=cfg.api_key, concurrency=cfg.concurrency)


def _tokenizer_for(cfg: EvalConfig) -> Any:
    """The chat template for vllm/openai backends comes from the model's local tokenizer."""
    from ..models import load_tokenizer

    try:
        return load_tokenizer(cfg.model)
    except MathtuneError as e:
        raise MathtuneError(
            f"chat prompt styles need the tokenizer of {cfg.model!r} to apply its chat template: {e.message}",
            "pass --model as a catalogue name / Hub id / local dir, or use --prompt cot or --prompt gsm8k",
        ) from None


class _Progress:
    """A rich progress bar with problems/s and running accuracy (silent when disabled)."""

    def __init__(self, total: int, already: int, enabled: bool, label: str) -> None:
        self.enabled, self.total, self.label = enabled and total > 0, total, label
        self.t0 = time.perf_counter()
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, writer: RecordWriter, generated: int) -> None:
        if self.bar is None:
            return
        rate = generated / max(time.perf_counter() - self.t0, 1e-9)
        graded = writer.written
        acc = f"acc {sum(r['correct'] for r in graded) / len(graded):.1%}" if graded else "acc -"
        self.bar.update(self.task, completed=generated, stats=f"{rate:.2f}/s  {acc}")
