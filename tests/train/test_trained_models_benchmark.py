"""The run, checkpoint, loss and cache helpers of benchmarks/trained_models.py."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.benchmark_scripts import BENCHMARKS, load_benchmark

sys.path.insert(0, str(BENCHMARKS))  # trained_models imports its sibling reference_models
bench = load_benchmark("trained_models")


def test_parse_run_splits_name_and_folder():
    assert bench.parse_run("ptdit=runs/a=b") == ("ptdit", Path("runs/a=b"))
    for bad in ("runs/ptdit", "=runs", "ptdit="):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=FOLDER"):
            bench.parse_run(bad)


def test_checkpoint_of_names_the_steps_it_found(tmp_path):
    for step in (500, 1000):
        (tmp_path / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (tmp_path / "checkpoints" / f"step-{step}" / "state.json").write_text("{}")
    assert bench.checkpoint_of(tmp_path, 1000) == tmp_path / "checkpoints" / "step-1000"
    with pytest.raises(SystemExit, match="found: step-1000, step-500"):
        bench.checkpoint_of(tmp_path, 1500)


def test_final_loss_averages_the_last_window_of_steps(tmp_path):
    lines = [json.dumps({"step": step, "loss": float(step), "lr": 1e-4}) for step in range(10, 1510, 10)]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    window = [float(s) for s in range(10, 1010, 10) if s > 1000 - bench.LOSS_WINDOW]
    assert bench.final_loss(tmp_path, 1000) == pytest.approx(np.mean(window))
    with pytest.raises(SystemExit, match="logs no loss"):
        bench.final_loss(tmp_path, 5000)


def test_cached_statistics_are_reused_only_for_the_same_settings(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.full((3, 2), float(len(calls)))

    path = tmp_path / "run.npz"
    first = bench.cached(path, {"samples": 4}, compute)
    again = bench.cached(path, {"samples": 4}, compute)
    assert len(calls) == 1 and np.array_equal(first, again)
    changed = bench.cached(path, {"samples": 8}, compute)
    assert len(calls) == 2 and changed[0, 0] == 2.0


def test_fid_and_kid_vanish_for_identical_sets_and_grow_with_a_shift():
    features = np.random.default_rng(0).normal(size=(64, 2048))
    fid, kid, _ = bench.fid_and_kid(features, features, resamples=0)
    assert abs(fid.value) < 1e-2  # 64 samples in 2048-d: the matrix square root of a singular covariance
    shifted_fid, shifted_kid, _ = bench.fid_and_kid(features + 1.0, features, resamples=0)
    assert shifted_fid.value == pytest.approx(2048.0, rel=1e-6)  # ||mu1 - mu2||^2, covariances equal
    assert shifted_kid > kid
