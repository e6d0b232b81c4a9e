"""benchmarks/latent_diffusion.py end to end on two tiny tokenizers: a DiT per tokenizer, gFID / KID per checkpoint."""

import json
import sys

import pytest
import torch

from tests.benchmark_scripts import BENCHMARKS, PixelStatistics, load_benchmark

sys.path.insert(0, str(BENCHMARKS))  # latent_diffusion imports its siblings
bench = load_benchmark("latent_diffusion")


def test_trains_each_tokenizer_once_and_measures_every_checkpoint(tmp_path, monkeypatch):
    import genaccel.eval.fid
    from genaccel.data.shapes import save_shapes

    monkeypatch.setattr(genaccel.eval.fid, "InceptionExtractor", PixelStatistics)
    from genaccel.tokenizers import MultiScaleTokenizer

    small = dict(image_size=16, patch_size=4, width=32, heads=2, encoder_depth=1, scale_depth=1, decoder_depth=1)
    torch.manual_seed(0)
    MultiScaleTokenizer(**small, scales=(1, 2, 4)).save_pretrained(tmp_path / "multi")
    MultiScaleTokenizer(**small, scales=(4,)).save_pretrained(tmp_path / "single")
    save_shapes(tmp_path / "data", num_images=24, size=16, seed=0, progress=False)
    argv = [str(tmp_path / "runs"), "--data", str(tmp_path / "data" / "train"),
            "--real", str(tmp_path / "data" / "heldout"), "--tokenizer", f"multi={tmp_path / 'multi'}",
            "--tokenizer", f"single={tmp_path / 'single'}", "--steps", "4", "--checkpoints", "2",
            "--width", "16", "--depth", "1", "--heads", "1", "--batch-size", "2", "--sample-steps", "1",
            "--fid-samples", "4", "--fid-batch", "4", "--write", str(tmp_path / "BENCHMARKS.md")]
    assert bench.main(argv) == 0
    rows = [line.split("|")[1:-1] for line in (tmp_path / "BENCHMARKS.md").read_text().splitlines()
            if line.startswith(("| multi", "| single"))]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("multi", "2"), ("multi", "4"), ("single", "2"),
                                                          ("single", "4")]
    assert all("±" in r[2] and "±" in r[3] for r in rows)
    state = json.loads((tmp_path / "runs" / "multi" / "checkpoints" / "step-4" / "state.json").read_text())
    assert state["config"]["vae"] == str(tmp_path / "multi") and state["latent_scaling_factor"] > 0
    # a second call reuses the finished runs: their checkpoints are not rewritten
    before = (tmp_path / "runs" / "single" / "checkpoints" / "step-4" / "ema.safetensors").stat().st_mtime_ns
    assert bench.main(argv) == 0
    assert (tmp_path / "runs" / "single" / "checkpoints" / "step-4" / "ema.safetensors").stat().st_mtime_ns == before
    assert "reused runs" in (tmp_path / "BENCHMARKS.md").read_text()


def test_bad_arguments_are_parser_errors():
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--data", "d", "--real", "r", "--tokenizer", "nameonly"])
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--data", "d", "--real", "r", "--tokenizer", "a=b", "--steps", "2",
                          "--checkpoints", "3"])
