"""benchmarks/training_recipes.py end to end on two tiny runs that differ in their loss weighting."""

import sys

import pytest

from tests.benchmark_scripts import BENCHMARKS, PixelStatistics, load_benchmark

sys.path.insert(0, str(BENCHMARKS))  # training_recipes imports its siblings
bench = load_benchmark("training_recipes")


def test_compares_runs_at_each_step_and_names_what_changed(tmp_path, monkeypatch):
    import genaccel.eval.fid
    from genaccel.data.shapes import save_shapes
    from genaccel.train.diffusion import TrainConfig, train

    monkeypatch.setattr(genaccel.eval.fid, "InceptionExtractor", PixelStatistics)
    save_shapes(tmp_path / "data", num_images=24, size=16, seed=0, progress=False)
    for weighting in ("uniform", "min-snr"):
        train(TrainConfig(output_dir=str(tmp_path / weighting), data=str(tmp_path / "data" / "train"), image_size=16,
                          width=16, depth=1, heads=1, patch_size=4, batch_size=2, max_steps=4, checkpoint_every=2,
                          sample_steps=1, log_every=1, loss_weighting=weighting))
    argv = ["--real", str(tmp_path / "data" / "heldout"), "--run", f"uniform={tmp_path / 'uniform'}",
            "--run", f"min-snr={tmp_path / 'min-snr'}", "--step", "2", "--step", "4", "--sample-steps", "1",
            "--fid-samples", "4", "--fid-batch", "4", "--write", str(tmp_path / "BENCHMARKS.md")]
    assert bench.main(argv) == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith(("| uniform", "| min-snr"))]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("uniform", "baseline", "2", "4"), ("uniform", "baseline", "4", "8"),
        ("min-snr", "loss_weighting=min-snr", "2", "4"), ("min-snr", "loss_weighting=min-snr", "4", "8")]
    assert all("±" in r[5] and "±" in r[6] for r in rows)
    assert "<!-- BEGIN training-recipes -->" in text and "biased upward" in text


def test_a_step_a_run_did_not_reach_is_named(tmp_path):
    (tmp_path / "run" / "checkpoints" / "step-2").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-2" / "state.json").write_text("{}")
    with pytest.raises(SystemExit, match="step-2"):
        bench.main(["--real", str(tmp_path), "--run", f"a={tmp_path / 'run'}", "--step", "3"])


def test_a_missing_real_folder_is_named(tmp_path):
    (tmp_path / "run" / "checkpoints" / "step-2").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-2" / "state.json").write_text("{}")
    with pytest.raises(SystemExit, match="--real: image folder .*missing does not exist"):
        bench.main(["--real", str(tmp_path / "missing"), "--run", f"a={tmp_path / 'run'}", "--step", "2"])
