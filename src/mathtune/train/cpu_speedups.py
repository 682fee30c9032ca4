"""CPU hot spots of LoRA SFT and GRPO under TRL 1.x, replaced by leaner equivalents.

A profile of a CPU LoRA step (SmolLM2-135M, LoRA on all linear layers with dropout, packed 1024-
token rows) puts TRL's fused LM head and PEFT's LoRA dropout next to the matrix products the step
really needs; `benchmarks/train_throughput.py` times whole steps with and without them.

1. **Loss head.** TRL's `add_fused_lm_head` scores tokens with a Triton kernel on GPUs; elsewhere
   it scores *every* position (prompt tokens too) through a tile-by-tile torch fallback with many
   elementwise passes. `install_cpu_loss_head` keeps TRL's interface (`fused_lm_head=True` returns
   the same `FusedCausalLMOutput`: per-token log-probs, entropy, top-1 hits, label mask, loss) but
   projects only the labelled positions, in token chunks, with one logsumexp per chunk; backward
   recomputes each chunk's logits (the `[tokens, vocab]` matrix is never kept), as TRL's does.
2. **LoRA dropout.** PEFT computes `lora_B(lora_A(dropout(x)))`: `nn.Dropout` draws a float per
   element and autograd keeps the dropped copy of `x` for every adapted layer (q, k, v, gate and
   up each keep their own copy of the same input). `fuse_lora_dropout` turns `lora_A` into one
   autograd function that draws 15 random bits per element, saves a 1-byte 0/1 mask instead of
   a 4-byte copy, and recomputes `x * mask` in backward. Same distribution (keep probability
   quantized to 1/32768), same expectation scaling `1 / (1 - p)`; it is dropout, not a different
   regularizer.
3. **Adapter input casts.** Under autocast (bf16 base, fp32 adapters) PEFT copies each adapted
   layer's input to fp32 and autocast copies it back for the bf16 product;
   `skip_autocast_input_casts` turns that round trip off for calls under autocast only, through
   PEFT's public per-layer switch (results bit-identical; tested). Not a library patch: it sets
   what `peft.helpers.disable_input_dtype_casting` sets, and its Undo removes the hooks.

Putting them in place patches TRL's and PEFT's objects: that is done by the library patches
`trl-cpu-loss-head` and `lora-dropout-in-lora-a` (`mathtune.patches`), gated on the versions
they were verified with; both functions return the patch's `Undo`. They switch on only where
they help (a CPU device; vanilla LoRA layers; no logit softcapping or scaling) and leave the
library code otherwise. Tests compare losses and gradients with the library implementations.
"""

from __future__ import annotations

import functools
from typing import Any

from ..patches.undo import Undo

# Tokens per LM-head chunk. Each chunk's [tokens, vocab] float32 logits live in two scratch
# buffers allocated once per pass and reused by every chunk (256 x 49152 x 4 B = 50 MB each),
# instead of ~5 fresh [1024, vocab] temporaries (1 GB) per chunk: for peak memory, not step time.
TOKEN_CHUNK = 256


# --------------------------------------------------------------------------- loss head


def _scratch(n_rows: int, weight: Any, copies: int) -> list[Any]:
    import torch

    shape = (min(max(n_rows, 1), TOKEN_CHUNK), weight.shape[0])
    return [torch.empty(shape, dtype=torch.float32, device=weight.device) for _ in range(copies)]


def _logits_into(buf: Any, h: Any, weight: Any) -> Any:
    """`h @ weight.T` in float32, written into the first rows of `buf`."""
    import torch

    out = buf[: h.shape[0]]
    if h.dtype == weight.dtype == torch.float32:
        return torch.mm(h, weight.t(), out=out)
    return out.copy_(h @ weight.t())


def _chunk_stats(h: Any, weight: Any, targets: Any, buf: Any, buf2: Any) -> tuple[Any, Any, Any, Any]:
    """(log-prob of each target, logsumexp, entropy, target is top-1) for one chunk of rows,
    computed in place in the two scratch buffers."""
    import torch

    s = _logits_into(buf, h, weight)
    top1 = s.argmax(-1) == targets
    peak = s.amax(-1, keepdim=True)
    s.sub_(peak)  # shifted logits: exp cannot overflow
    p = torch.exp(s, out=buf2[: h.shape[0]])
    z = p.sum(-1)
    log_z = z.log()
    logp = s.gather(1, targets[:, None]).squeeze(1) - log_z
    # entropy = -sum(softmax * log_softmax) = log z - sum(exp(s) * s) / z
    entropy = log_z - p.mul_(s).sum(-1) / z
    return logp, peak.squeeze(1) + log_z, entropy, top1


def _chunks(n: int) -> range:
    """Chunk starts over n rows; one (empty) chunk when n == 0, so outputs keep their dtypes."""
    return range(0, max(n, 1), TOKEN_CHUNK)


@functools.cache
def _labelled_log_probs_fn() -> Any:
    """The autograd.Function (built on first use: importing this module does not import torch)."""
    import torch

    class LabelledLogProbs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):  # type: ignore[override]
            with torch.no_grad():
                bufs = _scratch(hidden.shape[0], weight, 2)
                per_chunk = [_chunk_stats(hidden[s:s + TOKEN_CHUNK], weight, targets[s:s + TOKEN_CHUNK], *bufs)
                             for s in _chunks(hidden.shape[0])]
            logp, lse, entropy, top1 = (torch.cat(parts) for parts in zip(*per_chunk, strict=True))
            ctx.save_for_backward(hidden, weight, targets, lse)
            ctx.mark_non_differentiable(entropy, top1)
            return logp, entropy, top1

        @staticmethod
        def backward(ctx, grad_logp, *_):  # type: ignore[override]
            hidden, weight, targets, lse = ctx.saved_tensors
            grad_h = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
            if grad_logp is None:
                return grad_h, grad_w, None
            (buf,) = _scratch(hidden.shape[0], weight, 1)
            for s in _chunks(hidden.shape[0]):
                h, t, g = hidden[s:s + TOKEN_CHUNK], targets[s:s + TOKEN_CHUNK], grad_logp[s:s + TOKEN_CHUNK]
                # d logp / d logits = onehot(target) - softmax; scaled by the incoming gradient
                grad_logits = _logits_into(buf, h, weight).sub_(lse[s:s + TOKEN_CHUNK, None]).exp_()
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


# --------------------------------------------------------------------------- LoRA dropout


@functools.cache
def _dropout_linear_fn(device_type: str = "cpu") -> Any:
    """autograd.Function for `linear(dropout(x), A)` saving a byte mask (built on first use, one
    per device type: `custom_fwd`/`custom_bwd` need it to replay autocast in backward)."""
    import torch

    class DropoutLinear(torch.autograd.Function):
        # (s * (x . keep)) A^T = s * ((x . keep) A^T): the 1/(1-p) scale is applied to the
        # rank-r side, and masking is one multiplication by the 0/1 byte mask, so each pass over
        # x happens once (a bool mask's masked_fill or where took 4-6x as long: not vectorized).
        # Under autocast (TRL's bf16=True on a CPU with fast bf16) the forward product runs in
        # bf16 and grad_out arrives in bf16 while the adapter weight is fp32: custom_bwd runs
        # backward under the forward's autocast state, so its products cast the same way
        # (without it: "expected m1 and m2 to have the same dtype").
        @staticmethod
        @torch.amp.custom_fwd(device_type=device_type)
        def forward(ctx, x, weight, p):  # type: ignore[override]
            keep = dropout_keep_mask(x.shape, p, x.device)
            ctx.save_for_backward(x, weight, keep)
            ctx.scale = 1.0 / (1.0 - p)
            return ((x * keep) @ weight.t()).mul_(ctx.scale)

        @staticmethod
        @torch.amp.custom_bwd(device_type=device_type)
        def backward(ctx, grad_out):  # type: ignore[override]
            x, weight, keep = ctx.saved_tensors
            g = grad_out * ctx.scale
            grad_x = grad_w = None
            if ctx.needs_input_grad[0]:
                grad_x = (g @ weight).mul_(keep)
            if ctx.needs_input_grad[1]:
                kept = x * keep
                grad_w = g.reshape(-1, g.shape[-1]).t() @ kept.reshape(-1, x.shape[-1])
            return grad_x, grad_w, None

    return DropoutLinear


def dropout_keep_mask(shape: Any, p: float, device: Any) -> Any:
    """uint8 mask, each element 0 (dropped) with probability p quantized to 1/32768, else 1.

    Four 15-bit uniform draws per 64-bit random word (`random_` fills an int64 with 63 random
    bits: the top one of the last 16-bit quarter is always 0, so every quarter keeps its low
    15). Then comparison by clamping in int16 and one narrowing copy: no bool tensor, whose
    kernels are not vectorized on a CPU. Per 909 x 576 mask on 2 Zen 4 cores: 0.45 ms, against
    0.83 ms for int32 words and a bool comparison; applying it costs 0.07 ms, against 0.23-0.28
    for a bool mask (`benchmarks/train_throughput.py` times whole steps)."""
    import math

    import torch

    n = math.prod(shape)
    u = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_().view(torch.int16)[:n]
    threshold = round(p * 32768)  # u < threshold: dropped
    if threshold > 32767:  # every draw is below it (and beyond int16)
        return torch.zeros(shape, dtype=torch.uint8, device=device)
    # clamp to {threshold - 1, threshold}, shift to {0, 1}: 1 where u >= threshold
    return u.bitwise_and_(0x7FFF).clamp_(threshold - 1, threshold).sub_(threshold - 1).to(torch.uint8).view(shape)


def _lora_a_forward(self: Any, x: Any) -> Any:
    if self.training and self.mathtune_dropout > 0:
        return _dropout_linear_fn(x.device.type).apply(x, self.weight, self.mathtune_dropout)
    return type(self).forward(self, x)


def fuse_lora_dropout(model: Any) -> Undo:
    """Move each vanilla LoRA layer's dropout into its `lora_A` (see the module docstring) through
    the `lora-dropout-in-lora-a` patch; `len()` of the returned Undo is how many layers changed.
    Parameters and state-dict keys are untouched."""
    from ..patches.lora_dropout import move_dropout_into_lora_a

    return move_dropout_into_lora_a(model, _lora_a_forward)


# --------------------------------------------------------------------------- adapter input casts


def _cast_unless_autocast(module: Any, args: tuple) -> None:
    import torch

    x = args[0] if args else None
    if isinstance(x, torch.Tensor):
        module.cast_input_dtype_enabled = not torch.is_autocast_enabled(x.device.type)


def skip_autocast_input_casts(model: Any) -> Undo:
    """Under autocast, PEFT's LoRA layers stop casting their input to the adapter's dtype.

    With a bf16 base and fp32 adapters (PEFT's `autocast_adapter_dtype`) under TRL's `bf16=True`,
    each adapted layer copies its bf16 input to fp32 for `lora_A`, and autocast copies it back to
    bf16 for the product: two passes over every adapted layer's input, and their two backward
    casts, for the same bf16 product (bf16 -> fp32 -> bf16 is exact, so results are identical).
    A forward pre-hook sets PEFT's public per-layer switch (`cast_input_dtype_enabled`, what
    `peft.helpers.disable_input_dtype_casting` sets) to "off" for calls under autocast only:
    outside it (a rollout's `generate`, evaluation without autocast) the cast stays, as it is
    needed there. Vanilla LoRA layers only (DoRA and other variants compute more from `x`).
    `len()` of the returned Undo is how many layers got the hook."""
    undo = Undo("lora-input-cast-under-autocast")
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "_cast_input_dtype") and not getattr(module, "lora_variant", None):
            # the switch as it was comes back after the hook is gone (undo runs last change first)
            undo.set_attr(module, "cast_input_dtype_enabled", getattr(module, "cast_input_dtype_enabled", True))
            undo.call(module.register_forward_pre_hook(_cast_unless_autocast).remove)
            undo.targets += 1
    return undo
