"""benchmarks/calibration.py end to end on the reference DiT, with a stand-in feature extractor."""

import re
import sys

import pytest
import torch

from genaccel import SparsityPlan
from tests.benchmark_scripts import BENCHMARKS, PixelStatistics, load_benchmark

sys.path.insert(0, str(BENCHMARKS))  # calibration imports reference_models
bench = load_benchmark("calibration")


def test_the_plan_and_every_uniform_config_are_measured_on_unseen_outputs(tmp_path, monkeypatch):
    import genaccel.eval.fid

    monkeypatch.setattr(genaccel.eval.fid, "InceptionExtractor", PixelStatistics)
    out = tmp_path / "BENCHMARKS.md"
    plan_path = tmp_path / "plan.json"
    assert bench.main(["--calls", "1", "--eval", "3", "--batch", "3", "--steps", "4", "--runs", "1",
                       "--time-outputs", "1", "--target-psnr", "20", "--threads", "1", "--plan-out", str(plan_path),
                       "--write", str(out)]) == 0
    text = out.read_text()
    assert "<!-- BEGIN calibration-image-32 -->" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    names = [row.split(" | ")[0].strip("| *") for row in rows]
    plan = SparsityPlan.load(plan_path)
    uniform = bench.uniform_family(plan.cost_model.grid, 4)
    assert names == ["dense", "calibrated plan", "calibrated plan without step reuse", *uniform]
    assert len(uniform) == 3 * len(bench.default_candidates(plan.cost_model.grid))
    assert "FID from 3 samples" in text and "token grid 16x16 (256 tokens)" in text
    assert "Best uniform config at least as fast" in text or "No uniform config is as fast" in text
    modelled = {name: float(row.split(" | ")[3].rstrip("x")) for name, row in zip(names, rows)}
    assert modelled["dense"] == 1.0 and modelled["calibrated plan"] == round(plan.expected_speedup, 2)


def write_real_folder(folder, count: int, size: int, num_classes: int) -> None:
    """`count` random size x size PNGs with labels.csv cycling through the classes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["file,label"]
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{k:03d}.png")
        lines.append(f"{k:03d}.png,{k % num_classes}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")


def test_the_emoji_model_is_compared_with_the_real_folder(tmp_path, monkeypatch):
    import genaccel.eval.fid

    monkeypatch.setattr(genaccel.eval.fid, "InceptionExtractor", PixelStatistics)
    write_real_folder(tmp_path / "heldout", count=5, size=32, num_classes=10)
    out = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--model", "emoji", "--real", str(tmp_path / "heldout"), "--calls", "1", "--eval", "3",
                       "--batch", "3", "--steps", "2", "--runs", "1", "--time-outputs", "1", "--target-psnr", "20",
                       "--threads", "1", "--write", str(out)]) == 0
    text = out.read_text()
    assert "<!-- BEGIN calibration-emoji-32 -->" in text
    assert f"against the 5 held-out real images of `{tmp_path / 'heldout'}`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].split(" | ")[-1].strip(" |") == "FID vs real (N=3)"
    assert all(len(row.split(" | ")) == len(rows[0].split(" | ")) for row in rows)
    names = [row.split(" | ")[0].strip("| *") for row in rows[1:]]
    assert names[:3] == ["dense", "calibrated plan", "calibrated plan without step reuse"]
    # the generated labels follow the real folder's classes, and every real image is compared with
    args = bench.parse_args(["--model", "emoji", "--real", str(tmp_path / "heldout"), "--eval", "7"])
    labels, real, _ = bench.eval_labels_and_real(args, num_classes=10, size=None)
    assert labels == [0, 1, 2, 3, 4, 0, 1] and real.shape == (5, 3, 32, 32) and real.dtype == torch.uint8


def test_real_folder_errors_name_what_is_accepted(tmp_path, capsys):
    write_real_folder(tmp_path / "small", count=2, size=16, num_classes=10)
    cases = [(["--model", "emoji"], "--model emoji needs --real"),
             (["--model", "video", "--real", str(tmp_path / "small")], "--real is the emoji model's held-out set"),
             (["--model", "emoji", "--real", str(tmp_path / "missing")], "--real: image folder .*missing does not"),
             (["--model", "emoji", "--real", str(tmp_path / "small")], "its images are 16x16 px, the outputs 32x32")]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            bench.main(argv)
        assert re.search(message, capsys.readouterr().err), argv
