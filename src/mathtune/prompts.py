"""Named prompt styles, shared by `solve`, `eval` and SFT data formatting.

A style turns a problem (and optional few-shot examples) into the exact text the model sees.
Training formats examples with the same style it will be evaluated with, so the prompt a
model is tuned on and the prompt it is scored on never drift apart.

Styles:
- `chat-boxed`: chat template; "reason step by step and put the final answer in \\boxed{}"
  (the Qwen2.5-Math / DeepSeek-R1 convention).
- `chat`: chat template, the problem alone (for models tuned with their own convention).
- `cot`: plain completion for base models: "Question: ... Answer: Let's think step by step."
- `gsm8k`: plain completion in GSM8K's format; the answer ends with "#### <number>".
- `chat-tir`: chat template; Qwen2.5-Math's tool-integrated reasoning instruction (`--tools python`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import MathtuneError, unknown_name_error

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# Qwen2.5-Math's tool-integrated reasoning instruction (its TIR system prompt, as a user-turn line).
TIR_INSTRUCTION = ("Please integrate natural language reasoning with programs to solve the problem above, "
                   "and put your final answer within \\boxed{}.")
FACTS_HEADER = "Facts that may help:"


def with_facts(problem: str, facts: Sequence[str] = ()) -> str:
    """`problem` preceded by retrieved facts (formula cards), one per bullet."""
    if not facts:
        return problem
    return "\n".join([FACTS_HEADER, *(f"- {f}" for f in facts)]) + "\n\nProblem: " + problem.strip()


@dataclass(frozen=True)
class PromptStyle:
    name: str
    description: str
    chat: bool  # apply the tokenizer's chat template
    template: str  # user turn (chat) or whole prompt (plain); `{problem}` is replaced
    answer_format: Literal["boxed", "gsm8k", "any"]
    # Text that marks the end of an answer for plain-completion styles (the model would
    # otherwise go on to invent the next question). Chat styles stop at end-of-turn.
    stop_strings: tuple[str, ...] = ()
    fewshot_separator: str = "\n\n"

    def _fill(self, problem: str) -> str:
        # Plain substitution, not str.format: templates contain LaTeX braces such as \boxed{}.
        return self.template.replace("{problem}", problem.strip())

    def render(
        self,
        problem: str,
        tokenizer: Any = None,
        fewshot: Sequence[tuple[str, str]] = (),
        system: str | None = None,
        facts: Sequence[str] = (),
    ) -> str:
        """The full prompt text for `problem`, with optional (problem, solution) few-shot pairs
        and retrieved `facts` placed before the problem (`mathtune.retrieval`)."""
        problem = with_facts(problem, facts)
        if self.chat:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise MathtuneError(
                    f"prompt style {self.name!r} needs a tokenizer with a chat template",
                    "use --prompt cot or --prompt gsm8k for base models without one",
                )
            messages: list[dict[str, str]] = []
            if system:
                messages.append({"role": "system", "content": system})
            for q, a in fewshot:
                messages.append({"role": "user", "content": self._fill(q)})
                messages.append({"role": "assistant", "content": a})
            messages.append({"role": "user", "content": self._fill(problem)})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        shots = [self._fill(q) + " " + a.strip() for q, a in fewshot]
        prompt = self._fill(problem)
        return self.fewshot_separator.join([*shots, prompt]) if shots else prompt

    def completion(self, solution: str, answer: str | None = None) -> str:
        """The target text for SFT: a worked solution ending in this style's answer format."""
        solution = solution.strip()
        if answer is not None:
            if self.answer_format == "boxed" and "\\boxed" not in solution:
                solution += f"\nThe final answer is \\boxed{{{answer}}}."
            elif self.answer_format == "gsm8k" and "####" not in solution:
                solution += f"\n#### {answer}"
        return solution


STYLES: dict[str, PromptStyle] = {
    s.name: s
    for s in [
        PromptStyle(
            name="chat-boxed",
            description="chat template; reason step by step, final answer in \\boxed{}",
            chat=True,
            template="{problem}\n" + BOXED_INSTRUCTION,
            answer_format="boxed",
        ),
        PromptStyle(
            name="chat",
            description="chat template; the problem alone",
            chat=True,
            template="{problem}",
            answer_format="any",
        ),
        PromptStyle(
            name="chat-tir",
            description="chat template; reasoning with python programs (TIR, --tools python), answer in \\boxed{}",
            chat=True,
            template="{problem}\n" + TIR_INSTRUCTION,
            answer_format="boxed",
        ),
        PromptStyle(
            name="cot",
            description="plain completion for base models: Question/Answer, step by step",
            chat=False,
            template="Question: {problem}\nAnswer: Let's think step by step.",
            answer_format="any",
            stop_strings=("\nQuestion:", "\n\n\n"),
        ),
        PromptStyle(
            name="gsm8k",
            description="plain completion in GSM8K format; answer ends with '#### <number>'",
            chat=False,
            template="Question: {problem}\nAnswer:",
            answer_format="gsm8k",
            stop_strings=("\nQuestion:", "\n\n\n"),
        ),
    ]
}


def get_style(name: str) -> PromptStyle:
    try:
        return STYLES[name]
    except KeyError:
        raise unknown_name_error("prompt style", name, STYLES) from None
