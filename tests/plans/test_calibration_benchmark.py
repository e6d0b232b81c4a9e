"""benchmarks/calibration.py end to end on the reference DiT, with a stand-in feature extractor."""

import sys


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
