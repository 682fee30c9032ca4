"""Shared fixtures: tiny in-process models, an isolated MATHTUNE_HOME, and the shared data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny import make_tiny_model, make_tiny_tokenizer, save_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = Path(os.environ.get("MATHTUNE_SHARED_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))


@pytest.fixture(params=["fp32", "bf16"])
def dtype(request) -> str:
    """Both compute dtypes, whatever the host CPU prefers: bf16 runs everywhere (only slower on
    CPUs without AVX512-BF16/AMX), so a dtype bug fails on every machine, not only on one kind."""
    return request.param


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer, "llama")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved 2-layer Llama model directory, loadable by `mathtune.models.load_model`."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The real benchmark files in ../shared/data/benchmarks; tests needing them skip when absent."""
    if not (SHARED_BENCHMARKS / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"shared benchmark data not found at {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The pulled embedded default (SmolLM2-135M-Instruct), pulled on first use. Integration only."""
    from mathtune.models import resolve_model

    return resolve_model("smollm2-135m-instruct", pull=True)
