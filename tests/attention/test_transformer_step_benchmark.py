"""benchmarks/transformer_step.py: published configs, reduced sizes, and the table it writes."""

from __future__ import annotations


import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("transformer_step")


# parameters of the published checkpoints (billions), as their model cards state them
PUBLISHED_BILLIONS = {"pixart-sigma-2048": 0.6, "flux1-dev": 11.9, "sd3.5-large": 8.1, "cogvideox-5b": 5.6,
                      "wan2.1-1.3b": 1.4, "wan2.1-14b": 14.3}
# token grids at the published resolutions: pixels / (VAE factor * patch), frames / 4 + 1
PUBLISHED_GRIDS = {"pixart-sigma-2048": (128, 128), "flux1-dev": (64, 64), "sd3.5-large": (64, 64),
                   "cogvideox-5b": (13, 30, 45), "wan2.1-1.3b": (21, 30, 52), "wan2.1-14b": (21, 45, 80)}


def test_configs_are_the_published_models(bench):
    assert set(bench.MODELS) == set(PUBLISHED_BILLIONS)
    for name, spec in bench.MODELS.items():
        billions = bench.parameter_count(spec, depth=0) / 1e9
        assert billions == pytest.approx(PUBLISHED_BILLIONS[name], rel=0.08), name
        assert spec.grid == PUBLISHED_GRIDS[name]


def test_reduced_depth_and_grid(bench):
    flux = bench.MODELS["flux1-dev"]
    config = bench.model_config(flux, depth=2)
    assert (config["num_layers"], config["num_single_layers"]) == (2, 2)
    assert bench.model_config(flux, depth=0) == flux.config
    assert bench.scaled_grid((21, 45, 80), 4) == (6, 12, 20)
    assert bench.scaled_grid((3, 5), 8) == (1, 1)


def test_writes_its_section(bench, tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n")
    assert bench.main(["--device", "cpu", "--models", "pixart-sigma-2048", "--depth", "1", "--scale", "16",
                       "--runs", "1", "--warmup", "0", "--write", str(target)]) == 0
    text = target.read_text()
    assert "transformer-step" in text and "Reduced sizes" in text and "GPU: not measured" in text
    rows = [line for line in text.splitlines() if line.startswith("| PixArt-Sigma 2048 px")]
    assert [row.split("|")[5].strip() for row in rows] == list(bench.settings(video=False))
    assert all("8x8" in row or "4x4" in row or "dense" in row for row in rows)
    assert all(row.split("|")[3].strip() == "8x8" for row in rows)  # 128 / 16


@pytest.mark.parametrize("argv, message", [(["--models", "sdxl"], "unknown sdxl"), (["--scale", "0"], "--scale"),
                                           (["--device", "cuda:0"], "no CUDA")])
def test_rejects_bad_arguments(bench, argv, message, capsys, monkeypatch):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err
