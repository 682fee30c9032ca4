"""`mathtune solve`: ask a model a math question, stream its solution, print the final answer.

    mathtune solve "What is 12*7?"
    echo "Solve 2x+3=11" | mathtune solve -
    mathtune solve --file problems.jsonl --model qwen2.5-coder-0.5b-instruct --prompt chat-boxed
    mathtune solve "How many ways to choose 3 of 7?" --retrieve cards      # formula cards in the prompt
    mathtune solve "What is 2^100 mod 7?" --model qwen2.5-coder-0.5b-instruct --tools python
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
    p.add_argument("--retrieve", default="none", choices=["none", "cards", "exemplars"],
                   help="put retrieved formula cards or solved exemplars (--exemplars) into the prompt")
    p.add_argument("--retrieve-k", type=int, default=3, help="cards or exemplars per problem")
    p.add_argument("--cards", action="append", default=[], help="extra formula-card file (YAML, JSONL or LaTeX .tex); repeatable")
    p.add_argument("--exemplars", help="solved examples for --retrieve exemplars: a dataset dir or file")
    p.add_argument("--tools", default="none", choices=["none", "python"],
                   help="python: the model's programs run in the sandbox (tool-integrated reasoning)")
    p.add_argument("--max-tool-calls", type=int, default=4)


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
    if args.retrieve == "exemplars" and not args.exemplars:
        from ..errors import MathtuneError

        raise MathtuneError("--retrieve exemplars needs --exemplars", "pass a dataset dir or a JSONL of solved examples")

    import torch
    from transformers import TextStreamer

    from ..grading import extract_answer
    from ..models import load_model
    from ..prompts import get_style

    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    chat_default = "chat-tir" if args.tools == "python" else "chat-boxed"
    style_name = args.prompt if args.prompt != "auto" else (chat_default if tok.chat_template else "cot")
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
        prompt = style.render(problem, tok, **retrieved(problem, style, args))
        if args.tools == "python":
            _solve_with_tools(model, tok, prompt, style, args)
            continue
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
    if hasattr(args, "_pool"):
        args._pool.close()
    return 0


def retrieved(problem: str, style: object, args: argparse.Namespace) -> dict[str, list]:
    """render() keywords for --retrieve: facts (formula cards) or fewshot (solved exemplars)."""
    from ..retrieval import CardStore, ExemplarStore

    if args.retrieve == "cards":
        if not hasattr(args, "_cards"):
            args._cards = CardStore.load(args.cards)
        return {"facts": [c.text() for c in args._cards.search(problem, args.retrieve_k)]}
    if args.retrieve == "exemplars":
        if not hasattr(args, "_exemplars"):
            args._exemplars = ExemplarStore.from_path(args.exemplars)
        hits = args._exemplars.search(problem, args.retrieve_k)
        return {"fewshot": [(e.problem, style.completion(e.solution, e.answer or None)) for e in hits]}  # type: ignore[attr-defined]
    return {}


def _solve_with_tools(model: object, tok: object, prompt: str, style: object, args: argparse.Namespace) -> None:
    """One TIR trajectory (programs run in the sandbox), printed when complete."""
    from ..generation import HFGenerator, SamplingParams
    from ..grading import extract_answer
    from ..tools import SandboxPool
    from ..tools.tir import run_tir

    if not hasattr(args, "_pool"):
        args._gen = HFGenerator(model, tok, batch_size=1)
        args._pool = SandboxPool(workers=1)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            seed=args.seed, stop=style.stop_strings)  # type: ignore[attr-defined]
    (r,), = run_tir(args._gen, [prompt], params, args._pool, max_calls=args.max_tool_calls)
    print(r.text.strip())
    print(f"\n[tools: {r.calls} program(s) run, {r.failures} failed, {r.timeouts} timed out"
          f"{', call limit reached' if r.limit_reached else ''}]")
    answer = extract_answer(r.text)
    print(f"Final answer: {answer if answer is not None else '(none found)'}", flush=True)
