"""An Ollama `Modelfile` for an exported GGUF: `ollama create NAME -f Modelfile` in the export dir.

    from mathtune.export.modelfile import modelfile_text
    text = modelfile_text("model-q8_0.gguf", tokenizer)

The TEMPLATE is derived from the chat template for the two families our models use: ChatML
(`<|im_start|>`, SmolLM2 and Qwen2) and Llama 3 (`<|start_header_id|>`). A template that renders a
default system prompt when none is given (SmolLM2's does) gets it as SYSTEM, so Ollama prompts the
model exactly as transformers does. Other templates get no TEMPLATE line: Ollama then reads the
chat template stored in the GGUF itself. Stop tokens are the end-of-turn and eos tokens.
"""

from __future__ import annotations

from typing import Any

_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
_LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def template_family(chat_template: str | None) -> str | None:
    if not chat_template:
        return None
    if "<|im_start|>" in chat_template:
        return "chatml"
    if "<|start_header_id|>" in chat_template:
        return "llama3"
    return None


def default_system_prompt(tokenizer: Any) -> str | None:
    """The system message the chat template inserts when the conversation has none."""
    family = template_family(getattr(tokenizer, "chat_template", None))
    if family is None:
        return None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "X"}], tokenize=False)
    opener, closer = (("<|im_start|>system\n", "<|im_end|>") if family == "chatml"
                      else ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"))
    start = text.find(opener)
    if start < 0 or start > text.find("X"):
        return None
    body = text[start + len(opener):]
    return body[: body.find(closer)] if closer in body else None


def stop_tokens(tokenizer: Any) -> list[str]:
    family = template_family(getattr(tokenizer, "chat_template", None))
    stops = {"chatml": ["<|im_start|>", "<|im_end|>"], "llama3": ["<|eot_id|>", "<|start_header_id|>"]}.get(family, [])
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    return stops


def _quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile_text(gguf_name: str, tokenizer: Any, *, temperature: float = 0.0) -> str:
    template = {"chatml": _CHATML, "llama3": _LLAMA3}.get(template_family(getattr(tokenizer, "chat_template", None)))
    lines = ["# Ollama Modelfile written by mathtune export: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    if template:
        lines.append(f"TEMPLATE {_quote(template)}")
        system = default_system_prompt(tokenizer)
        if system:
            lines.append(f"SYSTEM {_quote(system)}")
    else:
        lines.append("# no TEMPLATE: Ollama uses the chat template stored in the GGUF")
    lines += [f'PARAMETER stop "{s}"' for s in stop_tokens(tokenizer)]
    lines.append(f"PARAMETER temperature {temperature:g}")
    return "\n".join(lines) + "\n"
