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

On a GPU, `--backend vllm` launches and supervises `vllm serve` instead (readiness check,
restarts after a crash, shutdown forwarded; `mathtune.serve.vllm_server`): the same flags, the
adapters as vLLM LoRA modules, --batch-size as --max-num-seqs, --max-prompt-tokens + --max-tokens
as --max-model-len. vLLM has no bounded queue and no playground: those are the hf backend's.
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
    p.add_argument("--max-queue", type=int, help="requests waiting before 429 (default 64; hf backend only)")
    p.add_argument("--max-tokens", type=int, default=512, help="largest max_tokens a request may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=4096, help="longest prompt accepted, in tokens")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                   help="hf: mathtune's server (default); vllm: launch and supervise `vllm serve` (GPU)")


def run(args: argparse.Namespace) -> int:
    from ..errors import MathtuneError

    if args.backend == "vllm":
        return _run_vllm(args)
    if args.max_queue is None:
        args.max_queue = 64
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


def _run_vllm(args: argparse.Namespace) -> int:
    from ..errors import MathtuneError
    from ..models import adapter_base, is_adapter_dir, resolve_model
    from ..serve.adapters import check_adapters, parse_adapters
    from ..serve.vllm_server import Supervisor, vllm_command

    if args.max_queue is not None:
        raise MathtuneError("--max-queue has no effect with --backend vllm (vLLM queues without a bound)",
                            "drop --max-queue, or serve with --backend hf")
    if args.device == "cpu" or args.device == "mps":
        raise MathtuneError(f"--backend vllm runs on CUDA GPUs, not --device {args.device}",
                            "serve with --backend hf on this device")
    env = {}
    if args.device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = args.device.split(":", 1)[1]
    if args.api_key:
        env["VLLM_API_KEY"] = args.api_key  # not in argv: `ps` would show it
    name = args.name or args.model
    adapters = parse_adapters(args.adapter, base_name=name)
    path = resolve_model(args.model)
    if is_adapter_dir(path):  # serve the base and the adapter under the name asked for
        if adapters:
            raise MathtuneError(f"the base model {args.model} is itself an adapter; --adapter needs the full base model",
                                "serve the base (mathtune serve BASE --backend vllm --adapter a=DIR_A ...)")
        base = adapter_base(path)
        adapters, name, path = {name: path}, base, resolve_model(base)
    else:
        check_adapters(adapters, args.model)
    cmd = vllm_command(path, name=name, host=args.host, port=args.port, adapters=adapters, dtype=args.dtype,
                       max_model_len=args.max_prompt_tokens + args.max_tokens, max_num_seqs=args.batch_size)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"mathtune serve: launching {' '.join(cmd)}", file=sys.stderr)
    return Supervisor(cmd, health_url=f"http://{host}:{args.port}/health", env=env).run()
