"""`mathtune serve`: an OpenAI-compatible server (completions, chat, streaming) with a playground.

    mathtune serve smollm2-135m-instruct                  # http://127.0.0.1:8000  (playground at /)
    mathtune serve runs/sft/my-adapter --port 8001 --api-key "$KEY"
    mathtune serve smollm2-135m-instruct --adapter sft=runs/sft/adapter --adapter grpo=runs/grpo/adapter
    mathtune eval --backend openai --base-url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct

Concurrent requests share one continuously batched decode loop. With --adapter (repeatable) one
server serves the base and each adapter of it: a request's `model` picks one (GET /v1/models
lists them); each adapter is merged once into a copy of the base that shares every unchanged
tensor (`mathtune.serve.adapters`). Binds 127.0.0.1 unless --host
says otherwise; with --api-key (or $MATHTUNE_API_KEY) every /v1 request needs
`Authorization: Bearer KEY`. Needs the `serve` extra: pip install "mathtune[serve]".
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "serve a model over an OpenAI-compatible HTTP API, with a web playground"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="catalogue name, Hub id, local dir or adapter dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", help="model id clients send as `model` (default: MODEL as given)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="also serve the PEFT adapter in DIR (trained on MODEL) as model NAME; repeatable")
    p.add_argument("--api-key", default=os.environ.get("MATHTUNE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default $MATHTUNE_API_KEY; none: open)")
    p.add_argument("--batch-size", type=int, default=32, help="rows decoded together (default 32)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting before 429 (default 64)")
    p.add_argument("--max-tokens", type=int, default=512, help="largest max_tokens a request may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=4096, help="longest prompt accepted, in tokens")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def run(args: argparse.Namespace) -> int:
    from ..errors import MathtuneError

    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as e:
        raise MathtuneError(f"mathtune serve needs FastAPI and uvicorn ({e.name} is missing)",
                            'pip install "mathtune[serve]"') from None
    from ..generation.hf import HFGenerator
    from ..serve.adapters import check_adapters, load_adapters, parse_adapters
    from ..serve.schemas import Limits

    if min(args.batch_size, args.max_queue, args.max_tokens, args.max_prompt_tokens) < 1:
        raise MathtuneError("--batch-size, --max-queue, --max-tokens and --max-prompt-tokens must be >= 1",
                            "pass positive values, e.g. --batch-size 32")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"mathtune serve: warning: binding {args.host} without --api-key: anyone who can reach it "
              "can use the model", file=sys.stderr)
    name = args.name or args.model
    adapter_dirs = parse_adapters(args.adapter, base_name=name)
    check_adapters(adapter_dirs, args.model)  # before the (slow) model load: a mismatch fails at once
    gen = HFGenerator(args.model, batch_size=args.batch_size, dtype=args.dtype, device=args.device)
    adapters = load_adapters(gen, adapter_dirs)
    limits = Limits(max_tokens=args.max_tokens, max_prompt_tokens=args.max_prompt_tokens, max_queue=args.max_queue)
    app = create_app(gen, model_name=name, adapters=adapters, api_key=args.api_key, limits=limits)
    served = ", ".join([name, *adapters])
    print(f"mathtune serve: {served} at http://{args.host}:{args.port}  (playground: /, API: /v1)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
