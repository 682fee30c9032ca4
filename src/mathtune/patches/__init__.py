"""Every change mathtune makes to a library's internals, in one place: version-gated and undoable.

    from mathtune.patches import PATCHES
    for p in PATCHES: print(p.describe(), p.why_off() or "on")

Each patch is one module here with a `Patch` object naming the library versions it was verified
with (`gate.py`). Outside those ranges the patch does nothing, the library's plain path runs,
and one warning per patch and process on the `mathtune.patches` logger says why.
`MATHTUNE_DISABLE_PATCHES=name[,name]` (or `all`) switches patches off by name. Each function that
patches returns an `Undo` (`undo.py`): `undo.undo()`, or leaving `with undo:`, restores exactly
the library's original objects, attributes and registrations. The speed logic the patches
install lives with its stage (`generation/`, `train/`); only the act of patching lives here.

Patches (name: verified with; what it changes; how to undo):

- `mkl-packed-linear` (`mkl_linear.py`): torch >=2.13,<2.14. Calls the private ops
  `torch.ops.mkl._mkl_reorder_linear_weight` / `_mkl_linear` with a zero-stride stand-in for the
  weight, for decoding on packed weights (`generation/fused.py`). A run-time probe makes that
  exact call (`PackedLinear`) against `F.linear` first. Changes no library object: nothing to
  undo (the packed copies are freed when `fused_projections` exits).
- `onednn-packed-linear` (`onednn_linear.py`): torch >=2.13,<2.14. Calls the private ops
  `torch.ops.mkldnn._reorder_linear_weight` / `_linear_pointwise` on bf16 and float32 weights,
  for decoding on packed weights (`generation/fused.py`: always in bf16; in float32 where it times
  faster than MKL's packed GEMM for the weight's shape). A run-time probe per dtype makes that
  exact call (`PackedLinearOneDNN`) against `F.linear` first. Changes no library object:
  nothing to undo (the packed copies are freed when `fused_projections` exits).
- `linear-instance-forwards` (`linear_forwards.py`): torch >=2.13,<2.14, transformers >=5.24,<5.25.
  Instance `forward` of plain `nn.Linear` layers (fused q/k/v and gate/up, packed layers) while
  `generate` runs. Undo: `replace_forwards(...)` returns it; `fused_projections` undoes on exit
  (the instances have no instance forward again).
- `decode-elementwise` (`elementwise.py`): torch >=2.13,<2.14, transformers >=5.24,<5.25. Instance
  `forward` of Llama/Qwen2/Mistral RMSNorm modules, and those modeling modules'
  `apply_rotary_pos_emb`, run in C while `generate` runs (`generation/decode_ops.py`) and, with
  their backward, while training on a CPU (`train/elementwise.py`, which also replaces the instance
  `forward` of their SiLU MLP modules: `silu(gate) * up` in one C op). Undo: `elementwise_in_c`
  undoes on exit; the Undo `elementwise_for_training(model)` returns (instances without an
  instance forward, the functions back).
- `decode-block-attention` (`attention.py`): transformers >=5.24,<5.25, torch >=2.13,<2.14.
  Registers `mathtune_decode` in transformers' AttentionInterface and AttentionMaskInterface and
  switches the model to it while `generate` runs (`generation/decode_attention.py`). Undo:
  `block_attention` undoes on exit (model back to `sdpa`, registry entries as before).
- `varlen-attention` (`attention.py`): transformers >=5.24,<5.25, torch >=2.13,<2.14. Registers
  `mathtune_varlen` the same way and switches the training model to it for padding-free batches
  (`train/attention.py`). Undo: the Undo `use_varlen_attention(model)` returns.
- `growing-kv-cache` (`growing_cache.py`): transformers >=5.24,<5.25. Subclasses
  `transformers.cache_utils.DynamicLayer` for the hf backend's preallocated KV cache
  (`generation/kv_cache.py`); off: plain `DynamicLayer` caches. Changes no library object:
  nothing to undo.
- `lora-fused-linear` (`lora_linear.py`): peft >=0.21,<0.22. Each `peft.tuners.lora.layer.Linear`
  gets an instance forward computing base product, adapter and dropout in one autograd function
  on a CPU (`train/lora_linear.py`), PEFT's class forward for every other call. Undo: the Undo
  `fuse_lora_layers(model)` returns (no instance forward again).
- `trl-cpu-loss-head` (`trl_loss_head.py`): trl >=1.16,<1.17. Replaces the instance forward that
  `trl.trainer.utils.add_fused_lm_head` installed with the CPU loss head
  (`train/cpu_speedups.py`), which defers to TRL's forward for every other call. Undo: the Undo
  `install_cpu_loss_head(model)` returns (TRL's bound forward back, the same object).

`pyproject.toml` bounds torch, transformers, peft and trl to these ranges, so an install gets the
versions the patches were verified with; widening a range means running tests/test_patches.py,
tests/test_cpu_speedups.py, tests/test_generation.py and tests/test_train.py on the new version.
"""

from __future__ import annotations

from .attention import DECODE, VARLEN
from .elementwise import PATCH as DECODE_ELEMENTWISE
from .gate import DISABLE_ENV, Patch
from .growing_cache import PATCH as GROWING_KV_CACHE
from .linear_forwards import PATCH as LINEAR_FORWARDS
from .lora_linear import PATCH as LORA_LINEAR
from .mkl_linear import PATCH as MKL_PACKED_LINEAR
from .onednn_linear import PATCH as ONEDNN_PACKED_LINEAR
from .trl_loss_head import PATCH as TRL_LOSS_HEAD
from .undo import Undo

PATCHES: tuple[Patch, ...] = (MKL_PACKED_LINEAR, ONEDNN_PACKED_LINEAR, LINEAR_FORWARDS, DECODE_ELEMENTWISE, DECODE,
                              VARLEN, GROWING_KV_CACHE, LORA_LINEAR, TRL_LOSS_HEAD)

__all__ = ["DISABLE_ENV", "PATCHES", "Patch", "Undo"]
