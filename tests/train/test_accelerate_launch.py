import json
import os
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.launch import ACCELERATE_LAUNCH

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_cpu_processes_train_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    command = [*ACCELERATE_LAUNCH, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--cpu", "-m", "genaccel", "train", str(out), "--num-images", "20",
               "--image-size", "16", "--width", "16", "--depth", "1", "--heads", "1", "--batch-size", "2",
               "--max-steps", "3", "--sample-steps", "1", "--log-every", "1", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one log line per step: only the main process writes
    state = json.loads((out / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["step"] == 3
    weights = load_file(out / "checkpoints" / "step-3" / "model" / "diffusion_pytorch_model.safetensors")
    assert "pos_embed.proj.weight" in weights
    assert (out / "final" / "model_index.json").exists()
