"""The newcomer's path on the embedded default: pull -> solve (streams, prints an answer, fast
second start), and the converted cache reproduces the GGUF's greedy continuation exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

pytestmark = pytest.mark.integration

MATHTUNE = [sys.executable, "-m", "mathtune.cli"]


def test_solve_streams_and_prints_final_answer(default_model_dir):
    proc = subprocess.run(
        [*MATHTUNE, "solve", "What is 12*7?", "--max-new-tokens", "64"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, proc.stdout  # a streamed solution, then the answer line
    assert lines[-1].startswith("Final answer: ")


def test_second_solve_produces_tokens_within_10s(default_model_dir):
    start = time.monotonic()
    proc = subprocess.Popen(
        [*MATHTUNE, "solve", "What is 3+4?", "--max-new-tokens", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = proc.stdout.read(1)  # blocks until the first streamed byte
    elapsed = time.monotonic() - start
    proc.communicate(timeout=120)
    assert first, "solve printed nothing"
    assert proc.returncode == 0
    assert elapsed < 10, f"first token after {elapsed:.1f}s"


def test_cache_matches_gguf_greedy(default_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathtune.models import fetch_gguf, load_model

    gguf = fetch_gguf("smollm2-135m-instruct", tmp_path)
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    model, tok = load_model("smollm2-135m-instruct", dtype="fp32")
    for text in ["Natalia sold clips to 48 of her friends in April", "Solve for x: 2x + 3 = 11."]:
        ids = tok(text, return_tensors="pt").input_ids
        assert ids.tolist() == ref_tok(text, return_tensors="pt").input_ids.tolist()
        kw = dict(max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
        with torch.inference_mode():
            ours = model.generate(ids, **kw)
            theirs = ref.generate(ids, **kw)
        assert ours.tolist() == theirs.tolist()
