"""`mathtune serve`: an OpenAI-compatible HTTP server over mathtune's decode loop, with a playground.

    from mathtune.serve import create_app      # needs the `serve` extra: pip install "mathtune[serve]"

app.py (endpoints, errors), schemas.py (request bodies, limits), batcher.py (continuous batching
of concurrent requests on `generation.hf.DecodeLoop`, one loop per model, models taking turns
fairly), adapters.py (`--adapter NAME=DIR`: several PEFT adapters of the base, each a merged copy
sharing every unchanged tensor, chosen by a request's `model`), playground.html (GET /: a
self-contained chat page, with a model picker when the server serves several).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
