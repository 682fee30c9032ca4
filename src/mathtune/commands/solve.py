"""`mathtune solve`: ask a model a math question, stream its solution, print the final answer.

    mathtune solve "What is 12*7?"
    echo "Solve 2x+3=11" | mathtune solve -
    mathtune solve --file problems.jsonl --model qwen2.5-coder-0.5b-instruct --prompt chat-boxed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "solve a math problem: stream the solution, then print the final answer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("problem", nargs="*", help="the problem text; '-' (or nothing) reads stdin")
    p.add_argument("--file", "-f", help="file of problems: one per line, or JSONL with a 'problem'/'question' field")
    p.add_argument("--model", "-m", default="smollm2-135m-instruct", help="catalogue name, Hub id or local dir")
    p.add_argument("--prompt", default="auto",
                   help="prompt style: chat-boxed, chat, cot, gsm8k (auto: chat-boxed with a chat template, else cot)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--no-stream", action="store_true", help="print the solution only when complete")


def read_problems(args: argparse.Namespace) -> list[str]:
    from ..errors import MathtuneError

    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise MathtuneError(f"problem file not found: {path}", "check the path passed to --file")
        problems = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MathtuneError(f"{path}, line {lineno}: invalid JSON ({e.msg})", "fix the line or use one problem per plain line") from None
                text = rec.get("problem") or rec.get("question")
                if not text:
                    raise MathtuneError(f"{path}, line {lineno}: no 'problem' or 'question' field", "add one of those fields")
                problems.append(str(text))
            else:
                problems.append(line.strip())
    elif args.problem and args.problem != ["-"]:
        problems = [" ".join(args.problem)]
    else:
        if sys.stdin.isatty():
            print("Type a problem, then Ctrl-D:", file=sys.stderr)
        text = sys.stdin.read().strip()
        problems = [text] if text else []
    if not problems:
        raise MathtuneError("no problem given", 'pass it as an argument: mathtune solve "What is 12*7?"')
    return problems


def run(args: argparse.Namespace) -> int:
    problems = read_problems(args)

    import torch
    from transformers import TextStreamer

    from ..grading import extract_answer
    from ..models import load_model
    from ..prompts import get_style

    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    style_name = args.prompt if args.prompt != "auto" else ("chat-boxed" if tok.chat_template else "cot")
    style = get_style(style_name)
    torch.manual_seed(args.seed)
    gen_kwargs = dict(max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
    if args.temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if style.stop_strings:
        gen_kwargs.update(stop_strings=list(style.stop_strings), tokenizer=tok)
    for i, problem in enumerate(problems):
        if len(problems) > 1:
            print(f"\n=== Problem {i + 1}/{len(problems)}: {problem}")
        prompt = style.render(problem, tok)
        inputs = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        streamer = None if args.no_stream else TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        with torch.inference_mode():
            out = model.generate(**inputs, streamer=streamer, **gen_kwargs)
        text = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for stop in style.stop_strings:
            text = text.split(stop)[0]
        if args.no_stream:
            print(text.strip())
        answer = extract_answer(text)
        print(f"\nFinal answer: {answer if answer is not None else '(none found)'}", flush=True)
    return 0
