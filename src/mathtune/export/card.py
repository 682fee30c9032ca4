"""The model card (README.md) of an export or a push: what it is, how it was made, how it checked.

    from mathtune.export.card import render_export_card, fallback_card
    text = render_export_card(info)        # info = the export.json record

The card of the source (a training run writes one with base model, data, method, hyper-parameters
and eval results) is carried over below the export's own sections, so that history is not lost.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from ..models import CATALOGUE, HUB_ID


def hub_base_model(ref: str | None) -> str | None:
    """The Hub id behind a model reference: a Hub id itself, a catalogue name, or a pulled
    catalogue directory (its mathtune.json records the Hub id); None for a plain local dir."""
    if not ref:
        return None
    if ref in CATALOGUE:
        return CATALOGUE[ref].hub_id
    manifest = Path(ref).expanduser() / "mathtune.json"
    if manifest.is_file():
        with contextlib.suppress(ValueError):
            return json.loads(manifest.read_text()).get("hub_id")
    return ref if HUB_ID.fullmatch(ref) and not Path(ref).expanduser().exists() else None


def _frontmatter(base_model: str | None, tags: list[str], library: str | None) -> str:
    lines = ["---"]
    base_model = hub_base_model(base_model)
    if base_model:
        lines.append(f"base_model: {base_model}")
    if library:
        lines.append(f"library_name: {library}")
    lines.append("tags:")
    lines += [f"- {t}" for t in tags]
    lines.append("---")
    return "\n".join(lines)


def strip_frontmatter(text: str) -> str:
    return re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S).strip()


def _verification_section(v: dict[str, Any] | None) -> list[str]:
    if v is None:
        return ["## Verification", "", "Not run (`--no-verify`)."]
    n = v["prompts"]
    return [
        "## Verification",
        "",
        "The written files were reloaded (GGUF through transformers' GGUF loader) and compared with the "
        f"source model in fp32 on {n} fixed math prompts, greedy decoding up to {v['max_new_tokens']} tokens:",
        "",
        "| check | result |",
        "|---|---|",
        f"| tokenizer gives the same ids | {'yes' if v['tokenizer_equal'] else 'NO'} |",
        f"| same eos token | {'yes' if v.get('eos_equal', True) else 'NO'} |",
        f"| greedy text identical | {v['greedy_text_equal']}/{n} |",
        f"| greedy tokens identical | {v['greedy_tokens_equal']}/{n} |",
        f"| top-1 agreement on the generated tokens (teacher-forced) | {v['top1_agreement']:.2%} of "
        f"{v.get('generated_positions', v['positions'])} |",
        f"| top-1 agreement over all positions, prompt included | {v.get('top1_agreement_all', v['top1_agreement']):.2%}"
        f" of {v['positions']} |",
        f"| max abs logit difference | {v['max_abs_dlogit']:.3g} |",
    ] + _heldout_rows(v.get("heldout"))


def _heldout_rows(h: dict[str, Any] | None) -> list[str]:
    if not h:
        return []
    return [
        "",
        f"Held-out check: {h['n']} problems ({h['benchmark']}) solved by both with greedy decoding "
        f"(up to {h['max_new_tokens']} tokens), graded by mathtune's grader:",
        "",
        "| check | result |",
        "|---|---|",
        f"| accuracy, source | {h['accuracy_source']:.1%} |",
        f"| accuracy, export | {h['accuracy_export']:.1%} |",
        f"| difference (95% CI) | {h['delta']:+.1%} ({h['delta_ci95'][0]:+.1%} to {h['delta_ci95'][1]:+.1%}) |",
        f"| McNemar p (paired) | {h['mcnemar_p']:.3g} ({h['fixed']} fixed, {h['broken']} broken) |",
        f"| identical responses | {h['identical_responses']}/{h['n']} |",
        f"| top-1 agreement on the source's responses | {h['top1_agreement']:.2%} of {h['positions']} tokens |",
    ]


def render_export_card(info: dict[str, Any], source_card: str | None = None) -> str:
    fmt, quant = info["format"], info.get("quant")
    base = info.get("base_model") or info.get("source")
    tags = ["mathtune", "math"] + (["gguf", quant] if fmt == "gguf" else ["safetensors"])
    lines = [_frontmatter(base, tags, "transformers" if fmt == "hf" else None), "",
             f"# {info['name']}", "",
             f"Exported by mathtune {info['mathtune_version']} from `{info['source']}`"
             + (f" ({quant} GGUF for llama.cpp / Ollama)." if fmt == "gguf" else " (Hugging Face safetensors)."), ""]
    if info.get("adapter"):
        lines += [f"The LoRA adapter `{info['adapter']}` is merged into the unquantized weights of its base "
                  f"model `{info['base_model']}` (a QLoRA adapter too: it is merged into the full-precision "
                  "base, not the 4-bit one it was trained on).", ""]
    lines += ["## Files", ""] + [f"- `{f}`" for f in info["files"]] + [""]
    if fmt == "gguf":
        lines += ["## Use", "", "```", f"llama-cli -m {info['gguf']} -cnv",
                  "ollama create my-math-model -f Modelfile", "```", "", "or in Python, through transformers' GGUF loader:",
                  "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f"model = AutoModelForCausalLM.from_pretrained(PATH, gguf_file={info['gguf']!r})",
                  f"tok = AutoTokenizer.from_pretrained(PATH, gguf_file={info['gguf']!r})", "```", ""]
    else:
        lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "model = AutoModelForCausalLM.from_pretrained(PATH)", "tok = AutoTokenizer.from_pretrained(PATH)",
                  "```", ""]
    lines += _verification_section(info.get("verification"))
    if source_card:
        lines += ["", "## From the source model's card", "", strip_frontmatter(source_card)]
    return "\n".join(lines) + "\n"


def fallback_card(folder: Path, repo_id: str) -> str:
    """A card for a folder pushed without one: from its export.json, else from its config."""
    record = folder / "export.json"
    if record.is_file():
        return render_export_card(json.loads(record.read_text()))
    config = folder / "config.json"
    arch = json.loads(config.read_text()).get("model_type", "?") if config.is_file() else "?"
    base = None
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    kind = "PEFT adapter" if adapter.is_file() else f"{arch} model"
    return "\n".join([_frontmatter(base, ["mathtune", "math"], "peft" if adapter.is_file() else "transformers"), "",
                      f"# {repo_id.split('/')[-1]}", "", f"A {kind} pushed by mathtune"
                      + (f", trained from `{base}`." if base else "."), ""])
