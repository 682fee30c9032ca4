"""`mathtune serve`: an OpenAI-compatible HTTP server over mathtune's decode loop, with a playground.

    from mathtune.serve import create_app      # needs the `serve` extra: pip install "mathtune[serve]"

app.py (endpoints, errors), schemas.py (request bodies, limits), batcher.py (continuous batching
of concurrent requests), playground.html (GET /: a self-contained chat page).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
