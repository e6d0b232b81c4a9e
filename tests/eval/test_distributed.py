"""`accelerate launch --num_processes 2 --cpu` shards FID feature extraction and gathers the stats."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from genaccel.cli import main
from tests.eval.helpers import write_images
from tests.launch import ACCELERATE_LAUNCH

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_two_process_fid_stats_equal_single_process(tmp_path, capsys, inception_weights) -> None:
    images = write_images(tmp_path / "images", 5, seed=3)  # odd count: shards of 3 and 2
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [*ACCELERATE_LAUNCH, "--num_processes", "2", "--cpu", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "genaccel", "fid-stats", str(images),
               "-o", str(tmp_path / "two.npz"), "--device", "cpu", "--batch-size", "2"]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote") == 1  # only the main process writes
    assert main(["fid-stats", str(images), "-o", str(tmp_path / "one.npz"), "--device", "cpu"]) == 0
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(one["count"]) == int(two["count"]) == 5
    np.testing.assert_allclose(two["mu"], one["mu"], atol=1e-5)
    np.testing.assert_allclose(two["sigma"], one["sigma"], atol=1e-5)
