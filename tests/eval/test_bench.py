"""`genaccel bench` end to end on a tiny saved DiT pipeline, plus method / prompt parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genaccel import ProxyAttentionConfig, WindowAttentionConfig
from genaccel.cli import main
from genaccel.pipelines.methods import parse_method, parse_methods
from genaccel.pipelines.prompts import class_labels, load_prompts


def test_parse_methods_builds_configs_and_puts_dense_first() -> None:
    methods = parse_methods(["proxy:4x4+shift", "window:2x8x8+alternate+dense-steps=2+dense-blocks=0,3"])
    assert [m.spec for m in methods] == ["dense", "proxy:4x4+shift", "window:2x8x8+alternate+dense-steps=2+dense-blocks=0,3"]
    assert methods[1].config == ProxyAttentionConfig(window=(4, 4), shift=True)
    assert methods[2].config == WindowAttentionConfig(window=(2, 8, 8), shift="alternate", dense_steps=2,
                                                      dense_blocks=(0, 3))
    assert methods[1].slug == "proxy-4x4-shift"


@pytest.mark.parametrize("bad", ["proxy", "proxy:4", "sparse:4x4", "window:4x4+foo", "proxy:4x4+dense-steps=x"])
def test_bad_methods_name_the_syntax(bad: str) -> None:
    with pytest.raises(ValueError, match="accepted: dense"):
        parse_method(bad)


def test_prompt_files_and_class_labels(tmp_path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="no prompts"):
        load_prompts(tmp_path / "empty.txt")
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog \n")
    assert load_prompts(tmp_path / "p.txt") == ["a cat", "a dog"]

    class Pipe:
        transformer = type("T", (), {"config": type("C", (), {"num_embeds_ada_norm": 10})()})()

    assert class_labels(["3", "7"], Pipe()) == [3, 7]
    with pytest.raises(ValueError, match="outside the pipeline's 10 classes"):
        class_labels(["12"], Pipe())
    with pytest.raises(ValueError, match="must be a class id"):
        class_labels(["tabby cat"], Pipe())


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A 2-layer DiT (8x8 tokens) with a tiny VAE, saved like a real pipeline folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                        num_layers=2, sample_size=16, patch_size=2, num_embeds_ada_norm=10)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 8], layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32)
    path = tmp_path_factory.mktemp("pipelines") / "tiny-dit"
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler()).save_pretrained(path)
    return path


def _bench(tiny_pipeline: Path, out: Path, prompts: Path, *extra: str) -> int:
    return main(["bench", "--model", str(tiny_pipeline), "--methods", "dense", "proxy:2x2", "--prompts", str(prompts),
                 "--steps", "2", "--guidance-scale", "1", "--device", "cpu", "-o", str(out), *extra])


def test_bench_writes_reports_and_rerun_skips_finished_outputs(capsys, tmp_path, tiny_pipeline) -> None:
    prompts = tmp_path / "labels.txt"
    prompts.write_text("1\n3\n")
    out = tmp_path / "out"
    assert _bench(tiny_pipeline, out, prompts) == 0
    for name in ("report.md", "report.json", "speed_quality.png", "grid.png"):
        assert (out / name).stat().st_size > 0
    images = sorted((out / "proxy-2x2").glob("*.png"))
    assert [p.name for p in images] == ["00000.png", "00001.png"]
    report = json.loads((out / "report.json").read_text())
    dense, proxy = report["methods"]
    assert dense["method"] == "dense" and dense["speedup"] == 1.0
    assert dense["psnr"] == 100.0 and dense["ssim"] == pytest.approx(1.0)
    assert 10 < proxy["psnr"] < 100 and 0 < proxy["ssim"] <= 1 and proxy["fid_vs_dense"] is not None
    assert any("LPIPS" in note for note in proxy["notes"]) or proxy["lpips"] is not None
    assert proxy["psnr_spread"] > 0 and proxy["ssim_spread"] >= 0 and proxy["fid_vs_dense_spread"] >= 0
    assert any("FID vs dense: FID from 2 samples" in note and "biased upward" in note for note in proxy["notes"])
    markdown = (out / "report.md").read_text()
    assert "| proxy:2x2 | 2 |" in markdown and f"{proxy['psnr']:.2f} ± {proxy['psnr_spread']:.2f}" in markdown

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png") if p.parent != out}
    timings = (out / "dense" / "timings.json").read_text()
    capsys.readouterr()
    assert _bench(tiny_pipeline, out, prompts) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "dense" / "timings.json").read_text() == timings


def test_bench_against_real_images_reports_fid_and_kid_with_intervals(tmp_path, tiny_pipeline) -> None:
    from PIL import Image

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(real / f"{k}.png")
    prompts = tmp_path / "labels.txt"
    prompts.write_text("1\n3\n5\n")
    out = tmp_path / "out"
    assert _bench(tiny_pipeline, out, prompts, "--real", str(real), "--bootstrap", "3") == 0
    for method in json.loads((out / "report.json").read_text())["methods"]:
        assert method["fid_vs_real"] > 0 and method["fid_vs_real_spread"] >= 0
        assert method["kid_vs_real"] is not None and method["kid_vs_real_spread"] >= 0
        assert any(note.startswith("FID vs real: FID from 3 samples") for note in method["notes"])


@pytest.mark.parametrize("argv, message", [
    (["--methods", "sparse:2x2"], "bad method"),
    (["--bootstrap", "-1"], "--bootstrap must be >= 0"),
    (["--real", "/nonexistent/real"], "does not exist"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bench_errors_are_one_line(capsys, tmp_path, tiny_pipeline, argv, message) -> None:
    code = main(["bench", "--model", str(tiny_pipeline), "--device", "cpu", "-o", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_methods_may_be_comma_separated_as_in_the_docs() -> None:
    methods = parse_methods(["dense,proxy:4x4,window:8x8+shift+dense-blocks=0,3"])
    assert [m.spec for m in methods] == ["dense", "proxy:4x4", "window:8x8+shift+dense-blocks=0,3"]
    assert methods[2].config.dense_blocks == (0, 3)


def test_builtin_class_labels_fit_the_model() -> None:
    from types import SimpleNamespace

    from genaccel.pipelines.prompts import BUILTIN_CLASS_LABELS, builtin_class_labels

    pipe_with = lambda n: SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(num_embeds_ada_norm=n)))  # noqa: E731
    assert builtin_class_labels(pipe_with(1000)) == list(BUILTIN_CLASS_LABELS)
    assert builtin_class_labels(pipe_with(8)) == list(range(8))
    assert builtin_class_labels(pipe_with(3)) == [0, 1, 2]


def test_missing_local_pipeline_folder_is_named() -> None:
    import pytest

    from genaccel.pipelines.loading import load_pipeline

    with pytest.raises(ValueError, match="no pipeline folder at /nonexistent/pipe"):
        load_pipeline("/nonexistent/pipe")
