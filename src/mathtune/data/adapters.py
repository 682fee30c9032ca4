"""Row adapters: one function per source turning a raw row (Hub or local, same format) into an
`Example`, or None when the source's own filters reject it (e.g. Magpie's quality filter).

Field names follow each Hub dataset as published:
- gsm8k (openai/gsm8k, main): question, answer ("...<<48/2=24>>...\\n#### 72").
- math (EleutherAI/hendrycks_math, competition_math layout): problem, solution (answer in the
  last \\boxed{}), level ("Level 3"), type ("Algebra"); MATH-500 rows (answer, subject, level int) too.
- numina-math-cot (AI-MO/NuminaMath-CoT): source, problem, solution, messages [{role, content}].
- numina-qwq-cot (PrimeIntellect/NuminaMath-QwQ-CoT-5M): problem_id, prompt, response,
  ground_truth, correct (bool; only correct traces are kept unless options.only_correct=false).
- magpie-reasoning (Magpie-Align/Magpie-Reasoning-V2-250K-CoT-Deepseek-R1-Llama-70B):
  conversations [{from: human|gpt, value}], plus instruction/response, input_quality,
  task_category, difficulty ("very easy" .. "very hard").
- nemotron-math (nvidia/Nemotron-RL-math-OpenMathReasoning): a NeMo-Gym RL set; rows carry
  question, expected_answer and responses_create_params {input: [{role, content}]}. It has no
  worked solutions, so `solution` is empty (use it for RL prompts or with require_answer only).
  ASSUMPTION: field names taken from NeMo-Gym's math_with_judge example data, which this dataset
  feeds; `problem` is accepted as an alias for `question`.
- gsm-hard (reasoning-machines/gsm-hard): input, code (PAL program), target (float).
- file: any file whose columns are (or are mapped to) problem, solution and/or answer, with
  optional id, domain, difficulty, messages, meta.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .readers import Row, need
from .schema import Example, stable_id

BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


@dataclass(frozen=True)
class RowContext:
    source: str  # registered source name
    where: str  # file:line or hub id[index]
    key: str  # recipe key for hints, e.g. sources[0]
    options: dict[str, Any] = field(default_factory=dict)


Adapter = Callable[[Row, RowContext], "Example | None"]


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (brace-matched), or None."""
    starts = [m.end() for m in BOXED_RE.finditer(text or "")]
    if not starts:
        return None
    i = starts[-1]
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1].strip() if depth == 0 else None


def final_line(answer: str) -> str:
    return f"The final answer is \\boxed{{{answer}}}."


def number_str(x: Any) -> str:
    """72.0 -> '72', '1,000' -> '1000', 2.5 -> '2.5'."""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else repr(x)
    s = str(x).strip().replace(",", "")
    try:
        f = float(s)
        return str(int(f)) if f.is_integer() and "." in s else s
    except ValueError:
        return s


def _clamp(n: int) -> int:
    return max(1, min(5, n))


def gsm8k(row: Row, ctx: RowContext) -> Example:
    q = str(need(row, "question", ctx.where, ctx.key))
    raw = str(need(row, "answer", ctx.where, ctx.key))
    body, _, ans = raw.rpartition("####")
    answer = number_str(ans) if body else ""
    steps = [re.sub(r"<<[^>]*>>", "", s).strip() for s in (body or raw).strip().splitlines() if s.strip()]
    solution = "\n".join([*steps, final_line(answer)]) if answer else "\n".join(steps)
    return Example(id=stable_id("gsm8k", q), problem=q, solution=solution, answer=answer, source="gsm8k",
                   domain="word_problems", difficulty=_clamp(len(steps) - 1), meta={"origin": ctx.where})


MATH_DOMAINS = {
    "algebra": "algebra", "intermediate algebra": "algebra", "prealgebra": "arithmetic",
    "number theory": "number_theory", "counting & probability": "combinatorics",
    "counting and probability": "combinatorics", "geometry": "geometry", "precalculus": "precalculus",
}


def math(row: Row, ctx: RowContext) -> Example:
    problem = str(need(row, "problem", ctx.where, ctx.key))
    solution = str(need(row, "solution", ctx.where, ctx.key))
    answer = row.get("answer") or last_boxed(solution) or ""
    level = row.get("level")
    m = re.search(r"\d", str(level)) if level is not None else None
    subject = str(row.get("type") or row.get("subject") or "").strip().lower().replace("_", " ")
    return Example(id=stable_id("math", problem), problem=problem, solution=solution, answer=str(answer),
                   source="math", domain=MATH_DOMAINS.get(subject, "other"),
                   difficulty=_clamp(int(m.group())) if m else None, meta={"type": subject})


NUMINA_DIFFICULTY = {"gsm8k": 1, "orca_math": 2, "cn_k12": 3, "math": 3, "synthetic_math": 3,
                     "amc_aime": 4, "synthetic_amc": 4, "olympiads": 5, "aops_forum": 5}


def numina_math_cot(row: Row, ctx: RowContext) -> Example:
    problem = str(need(row, "problem", ctx.where, ctx.key))
    solution = str(need(row, "solution", ctx.where, ctx.key))
    origin = str(row.get("source") or "")
    messages = row.get("messages") or None
    return Example(id=stable_id("numina-math-cot", problem), problem=problem, solution=solution,
                   answer=last_boxed(solution) or "", source="numina-math-cot",
                   domain="word_problems" if origin in ("gsm8k", "orca_math") else "other",
                   difficulty=NUMINA_DIFFICULTY.get(origin), messages=messages, meta={"origin": origin})


_QWQ_INSTRUCTION = re.compile(r"\s*(Return your final response as|Please reason step by step).*$", re.S | re.I)


def _strip_answer(text: str) -> str:
    text = text.strip().strip("$").strip()
    return last_boxed(text) or text


def numina_qwq_cot(row: Row, ctx: RowContext) -> Example | None:
    if ctx.options.get("only_correct", True) and row.get("correct") is False:
        return None
    prompt = str(need(row, "prompt", ctx.where, ctx.key))
    problem = _QWQ_INSTRUCTION.sub("", prompt).strip() or prompt
    response = str(need(row, "response", ctx.where, ctx.key))
    gt = row.get("ground_truth")
    answer = _strip_answer(str(gt)) if gt not in (None, "") else (last_boxed(response) or "")
    return Example(id=stable_id("numina-qwq-cot", problem), problem=problem, solution=response, answer=answer,
                   source="numina-qwq-cot", meta={"problem_id": row.get("problem_id")})


MAGPIE_DIFFICULTY = {"very easy": 1, "easy": 2, "medium": 3, "hard": 4, "very hard": 5}


def magpie_reasoning(row: Row, ctx: RowContext) -> Example | None:
    opts = ctx.options
    qualities = opts.get("input_quality", ["excellent"])
    if qualities and row.get("input_quality") not in qualities:
        return None
    category = opts.get("task_category", "Math")
    if category and row.get("task_category") != category:
        return None
    turns = need(row, "conversations", ctx.where, ctx.key)
    human = next((t["value"] for t in turns if t.get("from") in ("human", "user")), None)
    gpt = next((t["value"] for t in turns if t.get("from") in ("gpt", "assistant")), None)
    if not human or not gpt:
        return None
    think_done = "<think>" in gpt and "</think>" in gpt and gpt.split("</think>", 1)[1].strip()
    if opts.get("require_thinking", True) and not think_done:
        return None  # incomplete response: the thinking never closed or nothing follows it
    after = gpt.split("</think>", 1)[1] if "</think>" in gpt else gpt
    diff = MAGPIE_DIFFICULTY.get(str(row.get("difficulty") or "").strip().lower())
    return Example(id=stable_id("magpie-reasoning", human), problem=human, solution=gpt,
                   answer=last_boxed(after) or "", source="magpie-reasoning", difficulty=diff,
                   messages=[{"role": "user", "content": human}, {"role": "assistant", "content": gpt}],
                   meta={"uuid": row.get("uuid"), "input_quality": row.get("input_quality")})


def nemotron_math(row: Row, ctx: RowContext) -> Example:
    problem = row.get("question") or row.get("problem")
    if not problem:
        params = row.get("responses_create_params") or {}
        users = [m.get("content") for m in params.get("input", []) if m.get("role") == "user"]
        problem = users[-1] if users else need(row, "question", ctx.where, ctx.key)
    answer = need(row, "expected_answer", ctx.where, ctx.key)
    return Example(id=stable_id("nemotron-math", str(problem)), problem=str(problem), solution="",
                   answer=_strip_answer(str(answer)), source="nemotron-math",
                   meta={k: row[k] for k in ("problem_source", "pass_rate_72b_tir") if k in row})


def gsm_hard(row: Row, ctx: RowContext) -> Example:
    problem = str(need(row, "input", ctx.where, ctx.key))
    target = need(row, "target", ctx.where, ctx.key)
    code = str(row.get("code") or "").strip()
    answer = number_str(target)
    solution = (f"```python\n{code}\n```\n" if code else "") + final_line(answer)
    return Example(id=stable_id("gsm-hard", problem), problem=problem, solution=solution, answer=answer,
                   source="gsm-hard", domain="word_problems")


def _chat_problem(messages: Any) -> tuple[str, str] | None:
    """(first user turn, last assistant turn) of a chat-only row."""
    if isinstance(messages, str):
        import json

        messages = json.loads(messages) if messages.strip() else None
    if not isinstance(messages, list):
        return None
    user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    return (str(user), str(last.get("content") or "")) if user and last.get("role") == "assistant" else None


def generic_file(row: Row, ctx: RowContext) -> Example:
    """Rows in the Example layout (problem, solution and/or answer), or in the other common ones:
    GSM8K's question/answer ("... #### 72"), prompt/completion (prompt = the problem text), chat
    `messages` only (problem = the first user turn, solution = the final assistant turn)."""
    if row.get("problem") is None:
        if row.get("question") is not None and "####" in str(row.get("answer") or ""):
            ex = gsm8k(row, ctx)
            ex.source, ex.id = ctx.source, str(row.get("id") or stable_id(ctx.source, ex.problem))
            return ex
        chat = _chat_problem(row.get("messages"))
        alias = ("question", "answer") if row.get("question") is not None else ("prompt", "completion")
        if chat is not None:
            row = {**row, "problem": chat[0], "solution": row.get("solution") or chat[1]}
        elif row.get(alias[0]) is not None:
            row = {**row, "problem": row[alias[0]], "solution": row.get("solution", row.get(alias[1]))}
    problem = str(need(row, "problem", ctx.where, ctx.key))
    solution = row.get("solution")
    answer = row.get("answer")
    if answer is None and solution is None:
        need(row, "answer", ctx.where, ctx.key)  # raises, naming the column and the mapping option
    solution = "" if solution is None else str(solution)
    if answer is None:
        answer = last_boxed(solution) or (solution.rpartition("####")[2].strip() if "####" in solution else "")
    diff = row.get("difficulty")
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    return Example(id=str(row.get("id") or stable_id(ctx.source, problem)), problem=problem, solution=solution,
                   answer=number_str(answer) if isinstance(answer, (int, float)) else str(answer),
                   source=str(row.get("source") or ctx.source), domain=str(row.get("domain") or "other"),
                   difficulty=_clamp(int(diff)) if isinstance(diff, (int, float)) or str(diff).isdigit() else None,
                   messages=row.get("messages") or None, meta={**meta, "origin": ctx.where})
