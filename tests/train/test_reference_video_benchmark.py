"""benchmarks/reference_video.py on a tiny bundled video pipeline: every setting, the table it writes."""


import pytest
import torch

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("reference_video")


def test_writes_every_setting_with_intervals(bench, tmp_path):
    from diffusers import DDIMScheduler

    from genaccel.pipelines.class_conditional_video import ClassConditionalVideoPipeline
    from genaccel.train.bundle import bundle_pipeline
    from genaccel.train.diffusion import TrainConfig, build_model

    torch.manual_seed(0)
    config = TrainConfig(output_dir="unused", arch="wan", data="clips", image_size=16, num_frames=4, width=24,
                         depth=1, heads=2)
    pipe = ClassConditionalVideoPipeline(build_model(config, 2), DDIMScheduler(), ["a", "b"], num_frames=4,
                                         image_size=16)
    bundle_pipeline(pipe, tmp_path / "bundle", torch.float32)
    target = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--bundle", str(tmp_path / "bundle"), "--clips", "3", "--batch", "2", "--steps", "1",
                       "--runs", "1", "--time-clips", "1", "--no-fvd", "--write", str(target)]) == 0
    text = target.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| setting")]
    assert [row.split("|")[1].strip() for row in rows] == list(bench.settings())
    assert rows[0].split("|")[4].strip() == "100.00 ± 0.00"  # dense against itself
    assert all("±" in row.split("|")[4] for row in rows) and "token grid 4x8x8" in text
