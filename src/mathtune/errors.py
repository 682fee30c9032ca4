"""Errors a user can cause. The CLI prints them as one clear line (no traceback) and exits 2.

Every message names the input that is wrong and says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MathtuneError(Exception):
    """A user-facing error: `message` says what is wrong, `hint` how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to a misspelt one, or None when nothing is close."""
    # Score against the whole name and against its prefix of the same length, so a short,
    # misspelt prefix ("smolm2") still finds "smollm2-135m-instruct".
    def score(choice: str) -> float:
        whole = difflib.SequenceMatcher(None, name, choice).ratio()
        prefix = difflib.SequenceMatcher(None, name, choice[: len(name)]).ratio()
        return max(whole, prefix)

    scored = [(score(c), c) for c in choices]
    best = max(scored, default=(0.0, ""))
    return best[1] if best[0] >= 0.6 else None


def unknown_name_error(kind: str, name: str, choices: Iterable[str], hint: str = "") -> MathtuneError:
    """`unknown model 'smolm2'; did you mean 'smollm2-135m-instruct'?` style error."""
    choices = sorted(choices)
    guess = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if guess:
        msg += f"; did you mean {guess!r}?"
    return MathtuneError(msg, hint or f"choose one of: {', '.join(choices)}")
