"""Preference pairs: (prompt, chosen, rejected), made by grading a model's own samples or read
from a human-labelled file. The input of `stage: dpo` and `stage: reward`.

    mathtune data pairs --model smollm2-135m-instruct --data runs/data/synth_easy -k 4 -o pairs.jsonl

    from mathtune.data.pairs import make_pairs, read_pairs
    result = make_pairs(examples, generator, k=4, temperature=0.8)   # PairsResult
    result = pairs_from_run(load_run("runs/eval/x"))                  # an eval run's graded samples
    result.records, result.both, result.all_right, result.all_wrong
    pairs = read_pairs("pairs.jsonl")                                 # list[Pair]

The DeepSeek-Math guide's RLHF loop with the grader in place of human labels (as in Iterative
RPO, Pang et al. 2024, arXiv 2404.19733): sample `k` solutions per problem, grade each against
the gold, and pair a right one (chosen) with a wrong one (rejected). Only problems with both
outcomes give a pair: an all-right or all-wrong problem says nothing about which solution is
better. A chosen solution must also have ended on its own (a right answer followed by a
truncated ramble is not what we want more of); a rejected one may be truncated.

Pairs are written as JSONL, one pair per line:

    {"prompt": "<rendered prompt text>", "chosen": "...", "rejected": "...",
     "problem": "...", "answer": "...", "id": "...", "meta": {model, prompt_style, k, ...}}

`read_pairs` also reads human-labelled files: JSONL with `prompt`/`chosen`/`rejected`, each a
string or a list of chat messages (`{"role", "content"}`); without `prompt`, chosen/rejected
may be whole conversations sharing their first turns (TRL's implicit-prompt format). How the
training stages build the prompt: a pair with `problem` is rendered in the recipe's prompt
style for the model being trained (the same text eval prompts with); a chat-message prompt goes
through the model's chat template; a bare string prompt is used verbatim. Malformed lines are
skipped and reported by line number; a file with no usable pair is one error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import atomic_write_jsonl, read_jsonl
from .schema import Example

log = logging.getLogger("mathtune.data")

Messages = list[dict[str, str]]
Text = str | Messages
MAX_REPORTED = 5  # malformed lines named one by one in the warning


@dataclass
class Pair:
    """One preference pair; `prompt`, `chosen`, `rejected` are all text or all chat messages."""

    prompt: Text
    chosen: Text
    rejected: Text
    problem: str | None = None
    answer: str | None = None
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    def group(self) -> str:
        """What pairs of the same problem share (a validation split keeps them together)."""
        return self.problem or (self.prompt if isinstance(self.prompt, str) else repr(self.prompt))

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        for key in ("problem", "answer", "id"):
            if getattr(self, key) is not None:
                rec[key] = getattr(self, key)
        if self.meta:
            rec["meta"] = self.meta
        return rec


@dataclass
class PairsResult:
    """What `make_pairs` made: the pair records and how the problems split by outcome."""

    records: list[dict[str, Any]]
    problems: int = 0
    both: int = 0  # some samples right, some wrong: these give pairs
    all_right: int = 0
    all_wrong: int = 0
    unreadable_gold: int = 0  # the grader could not read the gold answer: skipped
    no_clean_chosen: int = 0  # both outcomes, but every right sample was cut off at max_new_tokens

    def summary(self) -> str:
        return (f"{len(self.records)} pairs from {self.problems} problems: {self.both} with both outcomes, "
                f"{self.all_right} all right, {self.all_wrong} all wrong"
                + (f", {self.unreadable_gold} with an unreadable gold" if self.unreadable_gold else "")
                + (f", {self.no_clean_chosen} whose right samples were all truncated" if self.no_clean_chosen else ""))


# --------------------------------------------------------------------------- making pairs


def make_pairs(
    examples: Sequence[Example],
    generator: Any,
    tokenizer: Any = None,
    *,
    k: int = 4,
    max_new_tokens: int = 512,
    temperature: float = 0.8,
    top_p: float = 1.0,
    style: str = "chat-boxed",
    system: str | None = None,
    seed: int = 0,
    pairs_per_problem: int = 1,
    model_name: str | None = None,
    on_complete: Callable[[int, int, Any], None] | None = None,
) -> PairsResult:
    """Sample `k` solutions per example with `generator` (a `mathtune.generation.Generator`),
    grade them against `example.answer`, and pair right with wrong. `tokenizer` renders chat
    prompts (default: the generator's own)."""
    from ..generation import SamplingParams, stable_seed
    from ..grading import rewards
    from ..prompts import get_style

    if k < 2:
        raise MathtuneError(f"pairs need at least 2 samples per problem, got k={k}", "pass -k 4 (or more)")
    if pairs_per_problem < 1:
        raise MathtuneError("pairs_per_problem must be >= 1", "pass --pairs-per-problem 1")
    examples = [ex for ex in examples if ex.answer.strip()]
    if not examples:
        raise MathtuneError("no example has a gold answer to grade samples against",
                            "give data whose rows carry an `answer` (or GSM8K `#### N` solutions)")
    prompt_style = get_style(style)
    tok = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
    prompts = [prompt_style.render(ex.problem, tok, system=system) for ex in examples]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=k, seed=seed,
                            stop=prompt_style.stop_strings)
    samples = generator.generate(prompts, params, seeds=[stable_seed(ex.id) for ex in examples],
                                 on_complete=on_complete)
    verdicts = rewards([c.text for row in samples for c in row], [ex.answer for ex in examples for _ in range(k)])
    provenance = {"model": model_name or getattr(generator, "model_name", None), "prompt_style": style, "k": k,
                  "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed}
    result = PairsResult(records=[], problems=len(examples))
    for i, (ex, prompt, row) in enumerate(zip(examples, prompts, samples, strict=True)):
        found = _pairs_of(ex, prompt, row, verdicts[i * k:(i + 1) * k], pairs_per_problem, provenance, result)
        result.records += [p.to_record() for p in found]
    return result


def pairs_from_run(run: Any, *, pairs_per_problem: int = 1) -> PairsResult:
    """Pairs from an eval run's graded samples (`mathtune eval --samples k`; `run` is an
    `eval.metrics.Run`): nothing is generated. The prompt is the one each sample was generated
    from; samples are graded again by the same grader `make_pairs` uses, so a problem whose gold
    it cannot read is skipped as there."""
    from types import SimpleNamespace

    from ..grading import rewards

    if pairs_per_problem < 1:
        raise MathtuneError("pairs_per_problem must be >= 1", "pass --pairs-per-problem 1")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in run.records:
        by_id.setdefault(str(rec["id"]), []).append(rec)
    if max(len(v) for v in by_id.values()) < 2:
        raise MathtuneError(f"eval run {run.path} has one sample per problem: no problem can have both outcomes",
                            "evaluate with --samples 4 --temperature 0.8 (or more), then make pairs from that run")
    provenance = {"model": run.model, "source_run": str(run.path), "prompt_style": run.config.get("prompt"), **{
        k: run.config.get(k) for k in ("samples", "temperature", "top_p", "max_new_tokens", "seed")}}
    result = PairsResult(records=[], problems=len(by_id))
    for pid, recs in by_id.items():
        recs = sorted(recs, key=lambda r: r.get("sample", 0))
        ex = SimpleNamespace(problem=recs[0].get("problem"), answer=str(recs[0].get("gold")), id=pid,
                             source=run.benchmark)
        row = [SimpleNamespace(text=r.get("response") or "", finish_reason=r.get("finish_reason")
                               or ("length" if r.get("truncated") else "stop")) for r in recs]
        verdicts = rewards([x.text for x in row], [ex.answer] * len(row))  # None: the gold is unreadable
        found = _pairs_of(ex, recs[0]["prompt"], row, verdicts, pairs_per_problem, provenance, result)
        result.records += [p.to_record() for p in found]
    return result


def _pairs_of(ex: Any, prompt: str, row: Sequence[Any], verdicts: Sequence[float | None], limit: int,
              provenance: dict[str, Any], result: PairsResult) -> list[Pair]:
    """The pairs of one problem (distinct texts, in sample order), counting its outcome in `result`."""
    if any(v is None for v in verdicts):
        result.unreadable_gold += 1
        return []
    right = [s for s, v in enumerate(verdicts) if v == 1.0]
    wrong = [s for s, v in enumerate(verdicts) if v == 0.0]
    if not wrong:
        result.all_right += 1
        return []
    if not right:
        result.all_wrong += 1
        return []
    result.both += 1
    chosen = _distinct([s for s in right if row[s].finish_reason == "stop"], row)
    rejected = _distinct(wrong, row)
    if not chosen:
        result.no_clean_chosen += 1
    pass_rate = round(len(right) / len(verdicts), 4)
    return [Pair(prompt=prompt, chosen=row[c].text, rejected=row[r].text, problem=ex.problem, answer=ex.answer,
                 id=ex.id, meta={**provenance, "samples": [c, r], "pass_rate": pass_rate,
                                 "rejected_finish_reason": row[r].finish_reason, "source": ex.source})
            for c, r in list(zip(chosen, rejected, strict=False))[:limit]]


def _distinct(indices: list[int], row: Sequence[Any]) -> list[int]:
    seen: set[str] = set()
    out = []
    for s in indices:
        if row[s].text.strip() and row[s].text not in seen:
            seen.add(row[s].text)
            out.append(s)
    return out


def write_pairs(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write pair records as JSONL, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_jsonl(path, records)


# --------------------------------------------------------------------------- reading pairs


def read_pairs(path: str | Path) -> list[Pair]:
    """Every usable pair of a JSONL file; malformed lines are skipped with a warning naming
    their line numbers, and a file with no usable pair is one MathtuneError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MathtuneError(f"pairs file not found: {path}",
                            "make one with `mathtune data pairs --model M --data SRC -o FILE.jsonl`, or point "
                            "data.pairs at a JSONL of prompt/chosen/rejected lines")
    pairs: list[Pair] = []
    bad: list[str] = []
    for lineno, rec, err in read_jsonl(path):
        parsed = _parse(rec) if rec is not None else err
        if isinstance(parsed, Pair):
            pairs.append(parsed)
        else:
            bad.append(f"line {lineno}: {parsed}")
    if bad:
        shown = "; ".join(bad[:MAX_REPORTED]) + (f"; and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else "")
        if not pairs:
            raise MathtuneError(f"no usable preference pair in {path} ({len(bad)} malformed lines: {shown})",
                                "each line needs prompt, chosen and rejected: strings or lists of "
                                "{role, content} chat messages")
        log.warning("%s: skipped %d malformed line(s) of %d: %s", path, len(bad), len(bad) + len(pairs), shown)
    if not pairs:
        raise MathtuneError(f"{path} holds no preference pairs (the file is empty)",
                            "make pairs with `mathtune data pairs`, or write prompt/chosen/rejected lines")
    return pairs


def _parse(rec: dict[str, Any]) -> Pair | str:
    """A Pair, or why the record is not one."""
    missing = [k for k in ("chosen", "rejected") if k not in rec]
    if missing:
        return f"no {' and no '.join(repr(k) for k in missing)}"
    fields: dict[str, Any] = {}
    for key in ("prompt", "chosen", "rejected"):
        if key not in rec:
            continue
        value, problem = _text_or_messages(rec[key])
        if problem:
            return f"{key!r} {problem}"
        fields[key] = value
    if "prompt" not in fields:
        split = _implicit_prompt(fields["chosen"], fields["rejected"])
        if isinstance(split, str):
            return split
        fields["prompt"], fields["chosen"], fields["rejected"] = split
    if any(isinstance(v, list) for v in fields.values()):  # one format for the three: chat messages
        fields = {"prompt": _as_messages(fields["prompt"], "user"), "chosen": _as_messages(fields["chosen"], "assistant"),
                  "rejected": _as_messages(fields["rejected"], "assistant")}
    if fields["chosen"] == fields["rejected"]:
        return "chosen and rejected are the same"
    extra = {k: rec.get(k) for k in ("problem", "answer", "id")}
    if any(v is not None and not isinstance(v, str | int) for v in extra.values()):
        return "'problem', 'answer' and 'id' must be strings"
    meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
    return Pair(**fields, **{k: (str(v) if v is not None else None) for k, v in extra.items()}, meta=meta)


def _text_or_messages(value: Any) -> tuple[Text, str | None]:
    if isinstance(value, str):
        return value, (None if value.strip() else "is empty")
    if isinstance(value, list) and value:
        for m in value:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                return value, "must be a list of {role, content} messages with string values"
        return [{"role": m["role"], "content": m["content"]} for m in value], None
    return value, "must be a non-empty string or a list of chat messages"


def _implicit_prompt(chosen: Text, rejected: Text) -> tuple[Messages, Messages, Messages] | str:
    """TRL's implicit-prompt format: two conversations sharing their first turns."""
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        return "no 'prompt' (give one, or chosen/rejected as whole chat conversations)"
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        return "no 'prompt', and chosen/rejected share no first turn to take it from"
    return chosen[:n], chosen[n:], rejected[n:]


def _as_messages(value: Text, role: str) -> Messages:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


# --------------------------------------------------------------------------- splitting


def split_pairs(pairs: Sequence[Pair], validation: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, validation): `validation` is a share (< 1) or a count (>= 1) of problems; all
    pairs of a problem land on the same side. Train keeps the file's order."""
    groups = list(dict.fromkeys(p.group() for p in pairs))
    n = len(groups)
    want = int(validation) if validation >= 1 else int(round(n * validation))
    want = min(want, n - 1)  # always leave something to train on
    if want <= 0:
        return list(pairs), []
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = {groups[i] for i in order[:want]}
    return [p for p in pairs if p.group() not in held], [p for p in pairs if p.group() in held]
