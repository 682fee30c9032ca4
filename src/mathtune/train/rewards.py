"""GRPO rewards: named, composable functions with weights, in TRL's reward-function form.

Each reward is a callable `(completions, **columns) -> list[float | None]`, as TRL's GRPOTrainer
calls it (`prompts`, `completion_ids`, `trainer_state` and the dataset's columns, here `answer`,
arrive as keyword arguments). A recipe names them with weights:

    rewards: {correctness: 1.0, format: 0.1}
    rewards: {correctness: 1.0, length: {weight: 0.5, budget: 192}}   # options beside the weight

    from mathtune.train.rewards import build_rewards
    funcs, weights = build_rewards({"correctness": 1.0, "format": 0.1}, get_style("chat-boxed"), 256, seed=0)

- `correctness`: the grader (`mathtune.grading.rewards`): 1.0 right, 0.0 wrong or no answer,
  None when the gold cannot be read (TRL then drops it from the sum instead of learning from a
  broken label). Bounded per check (`timeout`) and per batch (`budget`), so a pathological
  completion is a 0.0 verdict, never a hung step.
- `format`: 1.0 when the completion gives exactly one final answer in the prompt style's form
  (one non-empty `\\boxed{}`; one `#### ` line for gsm8k; an extractable answer otherwise).
- `length`: DAPO's soft over-length penalty (arXiv 2503.14476, eq. 13): 0 up to `budget`
  completion tokens, falling linearly to -1 at `trainer.max_completion_length`.
- `doubt`: a penalty for circling instead of solving, on eval's reasoning diagnostics
  (`mathtune.eval.diagnose`): 0 for a clean answer, falling linearly to -1 as self-doubt
  markers ("Wait, no", "Hmm", "Actually,", "Let me re-check", ...) go past `free` (default 2:
  one or two self-corrections are healthy) up to `limit` (default 8), and -1 for a looping
  answer (a repeated tail) or by the share of repeated 15-word n-grams (`repetition: false`
  turns that part off). The worse of the two counts.
- `reward_model`: the score of a reward model trained by `stage: reward` (option `path`: its run
  dir or adapter dir; `batch_size`), loaded once, on first use, on the training device. Its
  prompt is each problem rendered as its training pairs were, by its own tokenizer (so it may be
  another model family than the policy: `train/reward_model.py`). Scores
  are Bradley-Terry logits kept near 0 by `center_rewards_coefficient`; weigh it against
  `correctness`, e.g. `rewards: {correctness: 1.0, reward_model: {weight: 0.2, path: runs/train/rm}}`.
- controls, for attribution (a gain means nothing without its control): `random`, 1.0 with
  probability `p`, seeded and stateless (the same completion at the same step always draws the
  same value, from any thread and after a resume), as in "Spurious Rewards" (Shao et al. 2025);
  `format_only`, the format check alone. A control stands alone: mixing it with `correctness`
  would attribute the grader's gain to the control, so that is refused.

Everything here is pure (no shared mutable state) and the grader is thread-safe, so TRL may
call these from any thread.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MathtuneError, unknown_name_error
from ..eval import diagnose
from ..grading import extract_answer
from ..grading import rewards as grade_rewards
from ..grading.reward import completion_text
from ..prompts import PromptStyle

RewardFunc = Callable[..., list[float | None]]
CONTROLS = ("random", "format_only")

_BOX = re.compile(r"\\boxed\s*\{")
_FILLED_BOX = re.compile(r"\\boxed\s*\{\s*[^\s}]")
_GSM8K = re.compile(r"^\s*####\s*\S", re.MULTILINE)


class Correctness:
    """The grader as a reward; `answer` is the dataset column with the gold answers."""

    __name__ = "correctness"

    def __init__(self, timeout: float = 5.0, budget: float = 60.0) -> None:
        self.timeout, self.budget = float(timeout), float(budget)

    def __call__(self, completions: Sequence[Any], answer: Sequence[str] | None = None,
                 **_: Any) -> list[float | None]:
        if answer is None:
            raise MathtuneError("the correctness reward needs an 'answer' column", "give data with gold answers")
        return grade_rewards(list(completions), list(answer), timeout=self.timeout, budget=self.budget)


def has_one_answer(text: str, style: PromptStyle) -> bool:
    """Exactly one final answer in the style's form."""
    if style.answer_format == "boxed":
        return len(_BOX.findall(text)) == 1 and _FILLED_BOX.search(text) is not None
    if style.answer_format == "gsm8k":
        return len(_GSM8K.findall(text)) == 1
    return extract_answer(text) is not None


class Format:
    """1.0 when the completion gives exactly one final answer in the prompt style's form, else 0.0."""

    __name__ = "format"

    def __init__(self, style: PromptStyle) -> None:
        self.style = style

    def __call__(self, completions: Sequence[Any], **_: Any) -> list[float | None]:
        return [1.0 if has_one_answer(completion_text(c), self.style) else 0.0 for c in completions]


class FormatOnly(Format):
    """Control: the format check as the whole reward (no correctness)."""

    __name__ = "format_only"


class Length:
    """DAPO soft over-length penalty on the completion's token count."""

    __name__ = "length"

    def __init__(self, max_completion_length: int, budget: int | None = None) -> None:
        limit = int(max_completion_length)
        self.budget = int(budget) if budget is not None else (3 * limit) // 4
        if not 0 <= self.budget < limit:
            raise MathtuneError(f"length reward budget {self.budget} must lie in [0, {limit})",
                                "set rewards.length.budget below trainer.max_completion_length")
        self.limit = limit

    def __call__(self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None,
                 **_: Any) -> list[float | None]:
        if completion_ids is None:
            raise MathtuneError("the length reward needs completion_ids", "TRL's GRPOTrainer passes them")
        span = self.limit - self.budget
        return [-min(1.0, max(0, len(ids) - self.budget) / span) for ids in completion_ids]


class RandomReward:
    """Control: 1.0 with probability `p`, from a hash of (seed, step, position, completion)."""

    __name__ = "random"

    def __init__(self, seed: int = 0, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise MathtuneError(f"random reward p={p} is not a probability", "set rewards.random.p in [0, 1]")
        self.seed, self.p = int(seed), float(p)

    def __call__(self, completions: Sequence[Any], trainer_state: Any = None, **_: Any) -> list[float | None]:
        step = getattr(trainer_state, "global_step", 0)
        out: list[float | None] = []
        for i, c in enumerate(completions):
            key = f"{self.seed}\x00{step}\x00{i}\x00{completion_text(c)}".encode()
            u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
            out.append(1.0 if u < self.p else 0.0)
        return out


class Doubt:
    """Penalty for doubt loops and repetition: 0 clean, down to -1 (see the module docstring)."""

    __name__ = "doubt"

    def __init__(self, free: int = 2, limit: int = 8, repetition: bool = True) -> None:
        if not 0 <= int(free) < int(limit):
            raise MathtuneError(f"doubt reward: free={free} must be >= 0 and below limit={limit}",
                                "e.g. rewards: {doubt: {weight: 0.2, free: 2, limit: 8}}")
        self.free, self.limit, self.repetition = int(free), int(limit), bool(repetition)

    def penalty(self, text: str) -> float:
        d = diagnose(text, False, "ok")
        doubt = min(1.0, max(0, d["doubt_markers"] - self.free) / (self.limit - self.free))
        looping = 1.0 if d["tail_loop_words"] else float(d["repeated_fraction"])
        return 0.0 - max(doubt, looping if self.repetition else 0.0)  # 0.0, not -0.0, when clean

    def __call__(self, completions: Sequence[Any], **_: Any) -> list[float | None]:
        return [self.penalty(completion_text(c)) for c in completions]


class RewardModelReward:
    """A trained reward model's score of (prompt, completion) (`stage: reward`)."""

    __name__ = "reward_model"

    def __init__(self, path: str, batch_size: int = 8) -> None:
        from .reward_model import RewardModelScorer

        self.scorer = RewardModelScorer(path, batch_size=batch_size)  # a wrong path fails now

    def __call__(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None,
                 problem: Sequence[str] | None = None, **_: Any) -> list[float | None]:
        if prompts is None:
            raise MathtuneError("the reward_model reward needs the prompts", "TRL's GRPOTrainer passes them")
        return list(self.scorer.score(list(prompts), list(completions), None if problem is None else list(problem)))


# name -> (factory(style, max_completion_length, seed, **options), option names)
REWARDS: dict[str, tuple[Callable[..., RewardFunc], tuple[str, ...]]] = {
    "correctness": (lambda style, n, seed, **o: Correctness(**o), ("timeout", "budget")),
    "format": (lambda style, n, seed, **o: Format(style), ()),
    "length": (lambda style, n, seed, **o: Length(n, **o), ("budget",)),
    "random": (lambda style, n, default_seed, **o: RandomReward(o.pop("seed", default_seed), **o), ("seed", "p")),
    "format_only": (lambda style, n, seed, **o: FormatOnly(style), ()),
    "doubt": (lambda style, n, seed, **o: Doubt(**o), ("free", "limit", "repetition")),
    "reward_model": (lambda style, n, seed, **o: RewardModelReward(**o), ("path", "batch_size")),
}
REQUIRED: dict[str, tuple[str, ...]] = {"reward_model": ("path",)}  # options a reward cannot do without


def _weight_and_options(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[float, dict[str, Any]]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), {}
    if not isinstance(value, dict) or not isinstance(value.get("weight", 1.0), int | float):
        raise MathtuneError(f"rewards.{name} must be a weight or a mapping with 'weight' and options",
                            f"e.g. rewards: {{{name}: 1.0}}")
    options = {k: v for k, v in value.items() if k != "weight"}
    for key in options:
        if key not in allowed:
            raise unknown_name_error(f"option of reward {name!r}", key, allowed or ("weight",))
    return float(value.get("weight", 1.0)), options


def check_rewards(spec: dict[str, Any]) -> None:
    """Names known, options known, controls alone (cheap: before the model loads)."""
    if not spec:
        raise MathtuneError("stage grpo needs rewards", "add e.g. rewards: {correctness: 1.0, format: 0.1}")
    for name, value in spec.items():
        if name not in REWARDS:
            raise unknown_name_error("reward", name, REWARDS)
        _, options = _weight_and_options(name, value, REWARDS[name][1])
        for key in REQUIRED.get(name, ()):
            if key not in options:
                raise MathtuneError(f"reward {name!r} needs option {key!r}",
                                    f"e.g. rewards: {{{name}: {{weight: 0.2, {key}: runs/train/<reward run>}}}}")
    controls = [n for n in spec if n in CONTROLS]
    if controls and "correctness" in spec:
        raise MathtuneError(f"control reward {controls[0]!r} mixed with 'correctness'",
                            "run the control on its own (same budget) and compare it with the correctness run")


def build_rewards(spec: dict[str, Any], style: PromptStyle, max_completion_length: int,
                  seed: int = 0) -> tuple[list[RewardFunc], list[float]]:
    """TRL's `reward_funcs` and `reward_weights` for a recipe's `rewards:` section."""
    check_rewards(spec)
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    for name, value in spec.items():
        factory, allowed = REWARDS[name]
        weight, options = _weight_and_options(name, value, allowed)
        funcs.append(factory(style, max_completion_length, seed, **options))
        weights.append(weight)
    return funcs, weights
