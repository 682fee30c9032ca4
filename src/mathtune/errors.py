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
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_error(kind: str, name: str, choices: Iterable[str], hint: str = "") -> MathtuneError:
    """`unknown model 'smolm2'; did you mean 'smollm2-135m-instruct'?` style error."""
    choices = sorted(choices)
    guess = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if guess:
        msg += f"; did you mean {guess!r}?"
    return MathtuneError(msg, hint or f"choose one of: {', '.join(choices)}")
