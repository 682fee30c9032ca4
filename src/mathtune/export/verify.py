"""Prove an exported model behaves like its source: reload what was written and compare.

    from mathtune.export.verify import compare_models, reload_export
    reloaded, rtok = reload_export(out_dir, "gguf", "model-f32.gguf")
    report = compare_models(model, tok, reloaded, rtok)      # -> dict, stored in export.json

On fixed math prompts (rendered through the chat template when the tokenizer has one):
- `tokenizer_equal`: the reloaded tokenizer gives the same ids as the source's (a GGUF carries its
  own tokenizer; a wrong pre-tokenizer or special token shows here first);
- greedy decoding with both models: token-for-token and text equality per prompt;
- teacher-forced on the source's prompt + greedy continuation: max |Δlogit| over all positions and
  vocabulary, and top-1 agreement, the share of positions whose argmax is the same:
  `top1_agreement` over the positions that predict the model's own greedy tokens (what it writes),
  `top1_agreement_all` over every position, prompt included. Inside the prompt the model predicts
  text a user wrote; its distribution there is flat, and a q8_0 rounding flips near-tied argmaxes
  that never reach its output (SmolLM2-135M q8_0, 8 prompts x 32 tokens: 99.2% on its own
  tokens, 97.5% over all positions).
Runs in fp32 on the CPU, batch 1, so the numbers do not depend on padding. The reloaded
tokenizer's eos id is compared too (`eos_equal`): a wrong EOS is a classic cause of run-on output.

`export_model(heldout=...)` then runs a held-out check on both models, built by the command
layer from `mathtune.eval.heldout.heldout_check` (batched greedy solving, the grader, paired
McNemar; the export stage itself does not import the eval stage); `heldout_line` formats it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

PROMPTS = (
    "What is 12*7?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Solve for x: 2x + 3 = 11.",
    "Compute 1/2 + 1/3.",
    "What is the derivative of x^3 + 2x?",
    "A rectangle is 7 cm long and 5 cm wide. What is its area?",
    "What is the greatest common divisor of 12 and 18?",
    "What is the probability of rolling a sum of 7 with two fair dice?",
)


def render(tokenizer: Any, problem: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": problem}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Question: {problem}\nAnswer:"


def reload_export(out_dir: Path, fmt: Literal["hf", "gguf"], gguf_name: str | None = None) -> tuple[Any, Any]:
    """Load an export back through transformers (for GGUF: its GGUF loader, tokenizer included)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_name} if fmt == "gguf" else {}
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, **kwargs).eval()
    tok = AutoTokenizer.from_pretrained(out_dir, **kwargs)
    return model, tok


def _greedy(model: Any, ids: list[int], max_new_tokens: int, eos: list[int], pad: int | None) -> list[int]:
    """Greedy decoding through `generate` (batch 1, no padding); the same stop ids for both models,
    so a difference is the weights' doing (the GGUF's own eos is checked apart: `eos_equal`)."""
    import torch
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos or None,
                           pad_token_id=pad if pad is not None else (eos[0] if eos else None))
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             generation_config=cfg)
    return out[0, len(ids):].tolist()


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos]
    return sorted({i for i in [*ids, tok.eos_token_id] if i is not None})


def compare_models(source: Any, source_tok: Any, reloaded: Any, reloaded_tok: Any, *,
                   prompts: tuple[str, ...] = PROMPTS, max_new_tokens: int = 32) -> dict[str, Any]:
    """Per-prompt and overall agreement between the source model and its reloaded export."""
    import torch

    eos = _eos_ids(source, source_tok)
    rows: list[dict[str, Any]] = []
    max_delta, agree, positions, agree_gen, generated = 0.0, 0, 0, 0, 0
    for problem in prompts:
        text = render(source_tok, problem)
        ids = source_tok(text, add_special_tokens=True)["input_ids"]
        rids = reloaded_tok(text, add_special_tokens=True)["input_ids"]
        gen = _greedy(source, ids, max_new_tokens, eos, source_tok.pad_token_id)
        rgen = _greedy(reloaded, rids, max_new_tokens, eos, source_tok.pad_token_id)
        seq = torch.tensor([ids + gen])
        with torch.no_grad():
            a = source(input_ids=seq).logits[0].float()
            b = reloaded(input_ids=seq).logits[0].float()
        delta = float((a - b).abs().max())
        same = a.argmax(-1) == b.argmax(-1)
        same_top1 = int(same.sum())
        max_delta = max(max_delta, delta)
        agree += same_top1
        positions += a.shape[0]
        agree_gen += int(same[len(ids) - 1:-1].sum())  # the positions that predict gen[0], gen[1], ...
        generated += len(gen)
        rows.append({
            "prompt": problem, "tokenizer_equal": ids == rids, "greedy_tokens_equal": gen == rgen,
            "greedy_text_equal": source_tok.decode(gen, skip_special_tokens=True)
            == reloaded_tok.decode(rgen, skip_special_tokens=True),
            "max_abs_dlogit": delta, "top1_agreement": same_top1 / a.shape[0],
            "source_text": source_tok.decode(gen, skip_special_tokens=True),
        })
    return {
        "prompts": len(rows),
        "max_new_tokens": max_new_tokens,
        "tokenizer_equal": all(r["tokenizer_equal"] for r in rows),
        "eos_equal": reloaded_tok.eos_token_id == source_tok.eos_token_id,
        "greedy_tokens_equal": sum(r["greedy_tokens_equal"] for r in rows),
        "greedy_text_equal": sum(r["greedy_text_equal"] for r in rows),
        "max_abs_dlogit": max_delta,
        "top1_agreement": agree_gen / max(generated, 1),
        "generated_positions": generated,
        "top1_agreement_all": agree / max(positions, 1),
        "positions": positions,
        "per_prompt": rows,
    }


def summary_line(report: dict[str, Any]) -> str:
    n = report["prompts"]
    return (f"greedy text equal {report['greedy_text_equal']}/{n}, tokens equal {report['greedy_tokens_equal']}/{n}, "
            f"top-1 agreement {report['top1_agreement']:.2%} on {report['generated_positions']} generated tokens "
            f"({report['top1_agreement_all']:.2%} over all {report['positions']} positions), "
            f"max |Δlogit| {report['max_abs_dlogit']:.3g}, tokenizer {'equal' if report['tokenizer_equal'] else 'DIFFERS'}")


def heldout_line(h: dict[str, Any]) -> str:
    verdict = "significant" if h["mcnemar_p"] < 0.05 else "not significant"
    return (f"held-out ({h['benchmark']}, {h['n']} problems): accuracy {h['accuracy_source']:.1%} (source) vs "
            f"{h['accuracy_export']:.1%} (export), {h['delta']:+.1%}, McNemar p = {h['mcnemar_p']:.3g} ({verdict}); "
            f"{h['identical_responses']}/{h['n']} responses identical; top-1 agreement {h['top1_agreement']:.2%} "
            f"on {h['positions']} response tokens")
