"""Multi-process training: the shipped accelerate configs parse, and a 2-process DDP run on CPU
(gloo) trains the tiny model for a few steps through `accelerate launch ... mathtune.cli train`.

    .venv/bin/python -m pytest tests/test_train_distributed.py -q            # config parsing
    .venv/bin/python -m pytest tests/test_train_distributed.py -q -m slow    # + the 2-process run
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def test_launch_configs_parse_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    kinds = {}
    for path in CONFIGS:
        cfg = load_config_from_file(str(path))
        kinds[path.stem] = cfg.distributed_type
        assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/")
    assert kinds == {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP,
                     "deepspeed_zero2": DistributedType.DEEPSPEED, "deepspeed_zero3": DistributedType.DEEPSPEED}
    zero = {p.stem: load_config_from_file(str(p)).deepspeed_config["zero_stage"] for p in CONFIGS if "zero" in p.stem}
    assert zero == {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


@pytest.mark.slow
def test_two_process_ddp_on_cpu_trains(tiny_model_dir, tmp_path):
    rows = [{"problem": f"What is {i} + 1?", "solution": f"{i} + 1 = {i + 1}.", "answer": str(i + 1)} for i in range(32)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{name: {tiny_model_dir}}}\nmethod: {{r: 4}}\n"
        f"data: {{path: {data}, validation: 4}}\nrun: {{output_dir: {tmp_path / 'run'}, progress: plain, plot: false}}\n"
        "trainer: {max_steps: 3, per_device_train_batch_size: 2, save_steps: 3, eval_steps: 3}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "mathtune.cli", "train", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["metrics"]["global_step"] == 3
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    state = json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())
    # 2 processes x 2 examples per device: each step consumed 4 examples of the 28 training rows
    assert state["train_batch_size"] == 2 and state["global_step"] == 3
