"""CPU hot spots of LoRA SFT and GRPO under TRL 1.x: the loss head, replaced by a leaner equivalent.

A profile of a CPU LoRA step (SmolLM2-135M, LoRA on all linear layers with dropout, packed 1024-
token rows) puts TRL's fused LM head and PEFT's LoRA layers next to the matrix products the step
really needs; `benchmarks/train_throughput.py` times whole steps with and without them.

1. **Loss head.** TRL's `add_fused_lm_head` scores tokens with a Triton kernel on GPUs; elsewhere
   it scores *every* position (prompt tokens too) through a tile-by-tile torch fallback with many
   elementwise passes. `install_cpu_loss_head` keeps TRL's interface (`fused_lm_head=True` returns
   the same `FusedCausalLMOutput`: per-token log-probs, entropy, top-1 hits, label mask, loss) but
   projects only the labelled positions, in token chunks, with one logsumexp per chunk; the
   `[tokens, vocab]` matrix is never kept: with a frozen head (LoRA) forward computes each row's
   d logp / d h from the probabilities it has, otherwise backward recomputes each chunk's
   logits, as TRL's does.
2. **LoRA layers** are in `train/lora_linear.py` (base product, adapter and counter-based
   dropout in one autograd function).

Putting the loss head in place patches TRL's object: that is the library patch
`trl-cpu-loss-head` (`mathtune.patches`), gated on the versions it was verified with;
`install_cpu_loss_head` returns the patch's `Undo`. It switches on only where it helps (a CPU
device; no logit softcapping or scaling) and leaves TRL's code otherwise. Tests compare losses
and gradients with TRL's implementation.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from ..patches.undo import Undo

# Tokens per LM-head chunk. Each chunk's [tokens, vocab] float32 logits live in two scratch
# buffers reused by every chunk (256 x 49152 x 4 B = 50 MB each), instead of ~5 fresh
# [1024, vocab] temporaries (1 GB) per chunk: for peak memory. The buffers are kept between
# passes too (per thread, device and vocabulary size): fresh ones are new pages from the kernel on
# every pass (glibc maps allocations over 32 MB anew), and first-touching 50 MB took 10-100 ms
# on the AMX Xeon (2 cores), up to 4x the chunk's product itself.
TOKEN_CHUNK = 256
_buffers = threading.local()


def _scratch(n_rows: int, weight: Any, copies: int, dtype: Any = None) -> list[Any]:
    """`copies` [min(n_rows, TOKEN_CHUNK), vocab] views (float32 unless `dtype`) of this thread's
    kept buffers."""
    import torch

    dtype = dtype or torch.float32
    kept = vars(_buffers).setdefault("by_key", {})
    key = (weight.device, weight.shape[0], dtype)
    bufs = kept.get(key, [])
    while len(bufs) < copies:
        bufs.append(torch.empty((TOKEN_CHUNK, weight.shape[0]), dtype=dtype, device=weight.device))
    kept[key] = bufs
    rows = min(max(n_rows, 1), TOKEN_CHUNK)
    return [b[:rows] for b in bufs[:copies]]


def _shifted_logits_into(buf: Any, h: Any, weight: Any, shift: Any | None) -> tuple[Any, Any]:
    """(`h @ weight.T - shift` in float32, in the first rows of `buf`; shift), where `shift`
    [rows, 1] defaults to each row's peak logit. A product in a lower precision is written into a
    kept buffer of its dtype, then widened: a fresh [256, 49152] bf16 output took its 25 MB of
    pages from the kernel inside the product, and the first chunk of each pass then took 32-59 ms
    against 12-13 ms for the next (AMX Xeon, 2 cores). (The widening copy and an in-place
    subtraction: 2.3 ms there, against 15.3 for one mixed-dtype `torch.sub` into `out`.)"""
    import torch

    out = buf[: h.shape[0]]
    if h.dtype == weight.dtype == torch.float32:
        logits = torch.mm(h, weight.t(), out=out)
    else:
        (kept,) = _scratch(h.shape[0], weight, 1, torch.promote_types(h.dtype, weight.dtype))
        logits = out.copy_(torch.mm(h, weight.t(), out=kept[: h.shape[0]]))
    if shift is None:
        shift = logits.amax(-1, keepdim=True)
    return logits.sub_(shift), shift


def _chunk_stats(h: Any, weight: Any, targets: Any, buf: Any, buf2: Any,
                 want_dh: bool = False) -> tuple[Any, Any, Any, Any, Any]:
    """(log-prob of each target, logsumexp, entropy, target is top-1, d logp / d h or None) for one
    chunk of rows, computed in place in the two scratch buffers. With `want_dh`, each row's
    gradient of its log-prob by its hidden state, (onehot(target) - softmax) @ W, in h's dtype."""
    import torch

    s, peak = _shifted_logits_into(buf, h, weight, None)  # shifted logits: exp cannot overflow
    shifted = s.gather(1, targets[:, None]).squeeze(1)
    # target == argmax: its shifted logit is 0 and no earlier one is (argmax takes the first of a
    # tie, and bf16-born logits tie often). A pass over the few top-1 rows' prefixes instead of
    # argmax over the chunk (16 ms of [256, 49152] on the AMX Xeon, against 2 for amax).
    top1 = shifted == 0
    for r in top1.nonzero().flatten().tolist():
        t = int(targets[r])
        if t and bool((s[r, :t] == 0).any()):
            top1[r] = False
    p = torch.exp(s, out=buf2[: h.shape[0]])
    z = p.sum(-1)
    log_z = z.log()
    logp = shifted - log_z
    # entropy = -sum(softmax * log_softmax) = log z - sum(exp(s) * s) / z, in place in p's buffer
    if not want_dh:
        return logp, peak.squeeze(1) + log_z, log_z - p.mul_(s).sum(-1) / z, top1, None
    # onehot - softmax in float32 (1 - p of a confident target survives the cast), @ W
    grad = p.mul_((-1.0 / z)[:, None])
    grad[torch.arange(len(targets), device=grad.device), targets] += 1.0
    cast = grad  # in h's dtype: into the kept buffer of that dtype (the logits product's, free by now)
    if grad.dtype != h.dtype:
        cast = _scratch(h.shape[0], weight, 1, h.dtype)[0][: h.shape[0]].copy_(grad)
    dh = cast @ weight
    # sum(grad * s) = s[target] - sum(exp(s) * s) / z, so entropy = log z - s[target] + sum(grad * s)
    entropy = log_z - shifted + grad.mul_(s).sum(-1)
    return logp, peak.squeeze(1) + log_z, entropy, top1, dh


def _chunks(n: int) -> range:
    """Chunk starts over n rows; one (empty) chunk when n == 0, so outputs keep their dtypes."""
    return range(0, max(n, 1), TOKEN_CHUNK)


@functools.cache
def _labelled_log_probs_fn() -> Any:
    """The autograd.Function (built on first use: importing this module does not import torch)."""
    import torch

    class LabelledLogProbs(torch.autograd.Function):
        """Only the log-probs carry a gradient (entropy and top-1 are metrics). With a frozen head
        (LoRA) each row's d logp / d h is computed in forward, from the probabilities it already
        has, and backward scales it by the incoming gradient: the [rows, vocab] logits are never
        recomputed (one [256, 49152] product and its exp fewer per chunk). A trained head (full
        fine-tuning) needs the logits again for its weight gradient: backward recomputes them."""

        @staticmethod
        def forward(ctx, hidden, weight, targets):  # type: ignore[override]
            want_dh = ctx.needs_input_grad[0] and not ctx.needs_input_grad[1]
            with torch.no_grad():
                bufs = _scratch(hidden.shape[0], weight, 2)
                per_chunk = [_chunk_stats(hidden[s:s + TOKEN_CHUNK], weight, targets[s:s + TOKEN_CHUNK], *bufs,
                                          want_dh=want_dh) for s in _chunks(hidden.shape[0])]
            logp, lse, entropy, top1 = (torch.cat(parts) for parts in list(zip(*per_chunk, strict=True))[:4])
            if want_dh:
                ctx.save_for_backward(torch.cat([c[4] for c in per_chunk]))
            else:
                ctx.save_for_backward(hidden, weight, targets, lse)
            ctx.want_dh = want_dh
            ctx.mark_non_differentiable(entropy, top1)
            return logp, entropy, top1

        @staticmethod
        def backward(ctx, grad_logp, *_):  # type: ignore[override]
            if ctx.want_dh:
                (dh,) = ctx.saved_tensors
                if grad_logp is None:
                    return torch.zeros_like(dh), None, None
                return (dh.float() * grad_logp.float()[:, None]).to(dh.dtype), None, None
            hidden, weight, targets, lse = ctx.saved_tensors
            grad_h = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
            if grad_logp is None:
                return grad_h, grad_w, None
            (buf,) = _scratch(hidden.shape[0], weight, 1)
            for s in _chunks(hidden.shape[0]):
                h, t, g = hidden[s:s + TOKEN_CHUNK], targets[s:s + TOKEN_CHUNK], grad_logp[s:s + TOKEN_CHUNK]
                # d logp / d logits = onehot(target) - softmax; scaled by the incoming gradient
                grad_logits = _shifted_logits_into(buf, h, weight, lse[s:s + TOKEN_CHUNK, None])[0].exp_()
                grad_logits.mul_(-g[:, None].float())
                grad_logits[torch.arange(len(t), device=t.device), t] += g.float()
                grad_cast = grad_logits.to(hidden.dtype)
                if grad_h is not None:
                    grad_h[s:s + TOKEN_CHUNK] = grad_cast @ weight
                if grad_w is not None:
                    grad_w.addmm_(grad_cast.t().float(), h.float())
            return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None

    return LabelledLogProbs


def labelled_log_probs(hidden: Any, weight: Any, targets: Any) -> tuple[Any, Any, Any]:
    """(log p(target), entropy, target is top-1) for each row of `hidden` [N, H] under the LM head
    `weight` [V, H], without keeping the [N, V] logits."""
    return _labelled_log_probs_fn().apply(hidden, weight, targets)


def _plain_head(config: Any) -> bool:
    """No logit softcapping or scaling: the head is `hidden @ W.T` (all we implement)."""
    text = config.get_text_config()
    return not any(getattr(text, a, None) not in (None, 1.0) for a in (
        "final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))


def install_cpu_loss_head(model: Any) -> Undo:
    """Route TRL's `fused_lm_head=True` forward through `labelled_log_probs` on a CPU model.
    `model` is the (PEFT-unwrapped) causal LM that TRL patched; returns the `trl-cpu-loss-head`
    patch's Undo, true when it was installed."""
    from ..patches.trl_loss_head import PATCH, override_fused_head

    head = model.get_output_embeddings()
    if (head is None or getattr(head, "bias", None) is not None or head.weight.device.type != "cpu"
            or not _plain_head(model.config) or getattr(model.config.get_text_config(), "output_router_logits", False)):
        return Undo(PATCH.name)
    return override_fused_head(model, functools.partial(_cpu_loss_forward, type(model).forward))


def _packed_rows(self: Any, args: tuple, kwargs: dict[str, Any], mask: Any) -> Any | None:
    """The backbone's hidden states at the positions predicting the labelled targets `mask`
    ([B, L-1]) of a padded batch, computed padding-free: the rows' tokens concatenated into one
    row, positions restarting at 0 per row, attention per row (`train/attention.py`). Rows with the
    same prompt (the tokens before the first labelled target), as a GRPO group's, wherever they
    sit in the batch, pack it once and their completions after it, as its branches
    (`shared_prefixes`); a row with no labelled target is left out. None when the batch is not
    one this reproduces exactly: the model is not on varlen attention, inputs other than ids and
    a 2D mask, a row whose tokens are not one contiguous block, or a labelled target predicted
    from a padding position. Rotary positions are relative, so moving each row to start at 0
    changes no score."""
    import torch

    from .attention import NAME, shared_prefixes

    ids, attention = kwargs.get("input_ids"), kwargs.get("attention_mask")
    # PEFT's forward passes its own defaults along (inputs_embeds=None, output_attentions=None, ...)
    given = {k for k, v in kwargs.items() if v is not None and v is not False} - {"return_dict"}
    if (args or given - {"input_ids", "attention_mask", "use_cache"} or ids is None or attention is None
            or attention.dim() != 2 or getattr(self.config, "_attn_implementation", None) != NAME):
        return None
    keep = attention.bool()
    width = keep.shape[1]
    count = keep.sum(1)
    first = keep.int().argmax(1)
    last = width - 1 - keep.flip(1).int().argmax(1)
    if not bool((count > 0).all()) or not bool((last - first + 1 == count).all()) or bool((mask & ~keep[:, :-1]).any()):
        return None
    labelled = mask.any(1).tolist()
    prompt_end = mask.int().argmax(1).tolist()  # the last prompt position: it predicts the first target
    first, last = first.tolist(), last.tolist()
    # rows by prompt, in order of first appearance: TRL shuffles a generation batch's rows
    # (`shuffle_sequence_dict`), so a group's rows are rarely adjacent (the demo's GRPO step packed
    # 5,958 tokens where grouping needs ~2,650)
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for b in range(keep.shape[0]):
        if labelled[b]:
            by_prompt.setdefault(tuple(ids[b, first[b]:prompt_end[b] + 1].tolist()), []).append(b)
    index = torch.full(keep.shape, -1, dtype=torch.long)  # padded (row, column) -> packed position
    pieces, positions, cursor = [], [], 0
    for rows in by_prompt.values():
        root = cursor  # the group's first row packs the prompt; the others branch from it
        for j, b in enumerate(rows):
            f, t, e = first[b], prompt_end[b] + 1, last[b] + 1  # prompt [f, t), completion [t, e)
            if j:
                index[b, f:t] = torch.arange(root, root + t - f)
                piece, offset = ids[b, t:e], t - f
                index[b, t:e] = torch.arange(cursor, cursor + e - t)
            else:
                piece, offset = ids[b, f:e], 0
                index[b, f:e] = torch.arange(cursor, cursor + e - f)
            pieces.append(piece)
            positions.append(torch.arange(offset, offset + len(piece)))
            cursor += len(piece)
    if not pieces:
        return None
    packed, pos = torch.cat(pieces).to(ids.device), torch.cat(positions).to(ids.device)
    hidden = self.base_model(input_ids=packed[None], position_ids=shared_prefixes(pos[None]),
                             use_cache=False).last_hidden_state[0]
    return hidden[index[:, :-1][mask].to(hidden.device)]


def _no_labelled_rows(model: Any, weight: Any) -> Any:
    """The (empty) hidden states of a micro-batch with no labelled target, without running the
    backbone: every row's loss is masked (GRPO with `mask_truncated_completions` when all of a
    batch's completions hit the length cap), so the backbone's forward and backward would only
    produce zero gradients. They still come out zero, not absent: the empty rows are tied to each
    trainable parameter by a 0-weighted sum, so the optimizer sees the zero gradient the full
    backward gives (AdamW's moments and weight decay advance as they would; a missing gradient
    would skip the parameter). On the AMX Xeon such a GRPO step took 22 s and 5.4 GB through the
    backbone (TRL's padded path, since no row is left to pack)."""
    import torch

    rows = weight.new_zeros((0, weight.shape[1]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable:  # one element of each, times 0: d/dp is a zero tensor of p's shape
        rows = rows + (torch.cat([p.reshape(-1)[:1].float() for p in trainable]) * 0).sum().to(rows.dtype)
    return rows


def _cpu_loss_forward(class_forward: Any, trl_forward: Any, temperature: float = 1.0) -> Any:
    """The forward replacing TRL's: labelled positions through `labelled_log_probs` (logits divided
    by TRL's `temperature`), a padded batch run padding-free where `_packed_rows` can; every other
    call (no fused head, pre-shifted labels, no labels) to TRL's own forward."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    @functools.wraps(class_forward)  # keep the signature: `generate` validates its kwargs against it
    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, shift_labels: Any = None,
                num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        if not fused_lm_head or shift_labels is not None or labels is None:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        targets = labels[:, 1:]
        mask = targets != -100
        weight = self.get_output_embeddings().weight
        hidden = _no_labelled_rows(self, weight) if not bool(mask.any()) else _packed_rows(self, args, kwargs, mask)
        if hidden is None:
            hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][mask.to(labels.device)]
        mask = mask.to(hidden.device)
        if temperature != 1.0:
            hidden = hidden / temperature  # (h / T) W^T = logits / T
        logp, entropy, top1 = labelled_log_probs(hidden, weight, targets.to(hidden.device)[mask])
        # masked_scatter keeps an all-ignored micro-batch connected to the graph (a zero loss)
        log_probs = logp.new_zeros(mask.shape).masked_scatter(mask, logp)
        entropy_full = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
        top1_full = torch.zeros_like(mask).masked_scatter(mask, top1)
        denom = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denom, log_probs=log_probs, entropy=entropy_full,
                                   is_top1=top1_full, label_mask=mask)

    return forward


# --------------------------------------------------------------------------- all of them


def speed_up_cpu_trainer(trainer: Any) -> None:
    """Everything a CPU training step gets, for every stage that trains on a CPU (sft, cpt, grpo):
    the loss head on the PEFT-unwrapped causal LM (TRL added its fused head there), each LoRA
    layer as one function (`train/lora_linear.py`), RMSNorm and rotary in C with their backward
    (`train/elementwise.py`), and the thread count measured now and re-measured between steps, as
    generation does. Each is a version-gated library patch (`mathtune.patches`); they stay in place
    after training (their Undos are dropped: the C ops give transformers' forward bits, and every
    replaced forward hands the calls it does not cover to the library's own code)."""
    from ..models import retune_callback, tune_threads
    from .elementwise import elementwise_for_training
    from .lora_linear import fuse_lora_layers

    model = trainer.model
    install_cpu_loss_head(model.get_base_model() if hasattr(model, "get_base_model") else model)
    fuse_lora_layers(model)
    elementwise_for_training(model)
    trainer.add_callback(retune_callback(tune_threads("train")))

