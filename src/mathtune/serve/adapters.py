"""Several PEFT adapters of one base model in one server: `mathtune serve BASE --adapter NAME=DIR`.

    from mathtune.serve.adapters import check_adapters, load_adapters, parse_adapters
    dirs = parse_adapters(["sft=runs/sft/adapter", "grpo=runs/grpo/adapter"], base_name="smollm2")
    check_adapters(dirs, "smollm2-135m-instruct")     # each adapter's recorded base must be BASE
    gens = load_adapters(base_gen, dirs)               # {name: HFGenerator}, for create_app(adapters=...)

The choice: one merged model per adapter, sharing every tensor the adapter leaves unchanged.
Each adapter is merged into a copy of the loaded base (`PeftModel.from_pretrained` +
`merge_and_unload`, as `load_model(adapter_dir)` does), then every parameter and buffer of the
copy that is bit-identical to the base's is replaced by the base's own tensor. So:

- outputs are exactly those of `load_model(adapter_dir)` + `HFGenerator` (the same merged
  weights), at full speed: plain linear layers, so the CPU fast paths (fused, pre-packed
  projections) apply, with none of the per-layer LoRA products of an unmerged PeftModel;
- memory: each adapter costs the weights its LoRA changes (the targeted projections: about
  4/5 of SmolLM2-135M's weights when it targets every linear layer, a tenth for q/v only),
  never the embeddings, norms or untouched layers; loading needs one extra full copy of the
  base for a moment;
- a forward runs one set of weights, so rows of different adapters never share a batch: the
  batcher runs one decode loop per model, and once a request for another model waits, the
  running loop admits no new rows and the next loop serves the model of the oldest waiting
  request (`serve.batcher`). Switching costs nothing beyond ending a loop.

The alternatives were slower or inexact: PEFT multi-adapter (`load_adapter` + `set_adapter`)
keeps LoRA unmerged (extra matmuls in every targeted layer, no fused projections, results
that differ from the merged model in the last bits), and merging/unmerging in place on every
switch drifts the base weights by rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..generation.hf import HFGenerator


def parse_adapters(specs: Sequence[str], *, base_name: str) -> dict[str, Path]:
    """`NAME=DIR` flags -> {name: dir}; each name unique and not the base model's served name."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        name, directory = name.strip(), directory.strip()
        if not sep or not name or not directory:
            raise MathtuneError(f"--adapter {spec!r} is not NAME=DIR", "pass e.g. --adapter sft=runs/sft/adapter")
        if name == base_name or name in out:
            what = "the base model's name" if name == base_name else "given twice"
            raise MathtuneError(f"--adapter name {name!r} is {what}",
                                "give each adapter its own name (clients send it as `model`)")
        out[name] = Path(directory).expanduser()
    return out


def check_adapters(adapters: Mapping[str, Path], base_ref: str) -> None:
    """Every adapter is a PEFT adapter directory trained on `base_ref` (as its adapter_config.json
    records it), and `base_ref` is a full model, not itself an adapter."""
    from ..models import adapter_base, is_adapter_dir, resolve_model

    if not adapters:
        return
    base_path = resolve_model(base_ref)
    if is_adapter_dir(base_path):
        raise MathtuneError(f"the base model {base_ref} is itself an adapter; --adapter needs the full base model",
                            "serve the base (e.g. mathtune serve BASE --adapter a=DIR_A --adapter b=DIR_B)")
    for name, path in adapters.items():
        if not path.is_dir() or not is_adapter_dir(path):
            raise MathtuneError(f"--adapter {name}={path}: not a PEFT adapter directory (no adapter_config.json)",
                                "point at a directory written by save_pretrained of a PEFT model (runs/<run>/adapter)")
        recorded = adapter_base(path)
        if not _same_model(recorded, base_ref, base_path):
            raise MathtuneError(
                f"--adapter {name}={path} was trained on {recorded!r}, not on this server's base {base_ref!r}",
                f"serve it on its own base (mathtune serve {recorded} --adapter {name}={path}), or pass adapters of "
                f"{base_ref} only")


def load_adapters(base: HFGenerator, adapters: Mapping[str, Path]) -> dict[str, HFGenerator]:
    """One generator per adapter: the adapter merged into a copy of `base`'s model that shares
    every unchanged tensor with it (see the module docstring), on the adapter's tokenizer when
    it ships one, with `base`'s batch size and thread policy."""
    from ..models import load_tokenizer

    out: dict[str, HFGenerator] = {}
    for name, path in adapters.items():
        model = merged_copy(base.model, path)
        tok = load_tokenizer(path) if (path / "tokenizer_config.json").is_file() else base.tokenizer
        gen = HFGenerator(model, tok, batch_size=base.batch_size)
        gen.model_name, gen.tuner = name, base.tuner  # one worker thread: one thread policy
        out[name] = gen
    return out


def merged_copy(base_model: Any, adapter_dir: Path) -> Any:
    """`base_model` with the adapter merged in, as a new model sharing unchanged tensors with it."""
    import torch
    from peft import PeftModel

    model = copy.deepcopy(base_model)
    try:
        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False).merge_and_unload().eval()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise MathtuneError(f"could not apply the adapter {adapter_dir}: {str(e).splitlines()[0][:200]}",
                            "check it was trained on this base model with PEFT") from None
    base_modules = dict(base_model.named_modules())
    with torch.no_grad():
        for name, module in model.named_modules():
            twin = base_modules.get(name)
            if twin is not None:
                _share(module._parameters, twin._parameters)
                _share(module._buffers, twin._buffers)
    return model


def _share(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Point each of `mine` that equals the same-named tensor of `theirs` at that tensor."""
    import torch

    for key, tensor in mine.items():
        ref = theirs.get(key)
        if (tensor is not None and ref is not None and tensor is not ref and tensor.shape == ref.shape
                and tensor.dtype == ref.dtype and tensor.device == ref.device and torch.equal(tensor, ref)):
            mine[key] = ref


def _same_model(recorded: str, base_ref: str, base_path: Path) -> bool:
    """Whether an adapter's recorded base names the served base: the same name, the catalogue
    name of its Hub id (or the reverse), or the same local directory."""
    from ..models import CATALOGUE, resolve_model

    if recorded == base_ref:
        return True
    hub = {n: e.hub_id for n, e in CATALOGUE.items()}
    if hub.get(base_ref) == recorded or hub.get(recorded) == base_ref:
        return True
    try:
        return resolve_model(recorded, pull=False).resolve() == base_path.resolve()
    except MathtuneError:
        return False
