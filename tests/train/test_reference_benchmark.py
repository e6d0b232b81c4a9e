"""The class-balanced label and held-out real-image helpers of benchmarks/reference_models.py."""

import argparse

import numpy as np
import pytest
import torch

from genaccel.data.shapes import ShapesDataset, render_shape, split_indices
from tests.benchmark_scripts import load_benchmark

bench = load_benchmark("reference_models")


def test_balanced_labels_cycle_through_classes():
    assert bench.balanced_labels(10, 4) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert bench.balanced_labels(0, 8) == []
    counts = np.bincount(bench.balanced_labels(257, 8), minlength=8)
    assert counts.max() - counts.min() == 1 and counts.sum() == 257


def test_balanced_labels_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        bench.balanced_labels(4, 0)


def test_heldout_real_images_are_balanced_heldout_renders():
    real = bench.heldout_real_images(16, 8, num_images=400, size=32, seed=0)
    assert real.shape == (16, 3, 32, 32) and real.dtype == torch.uint8
    heldout = ShapesDataset(400, 32, 0, split="heldout")
    rendered = {np.array(heldout.image(i)[0]).tobytes(): heldout.image(i)[1] for i in range(len(heldout))}
    labels = [rendered[image.permute(1, 2, 0).numpy().tobytes()] for image in real]  # KeyError if not held out
    assert sorted(labels) == sorted(bench.balanced_labels(16, 8))


def test_heldout_real_images_top_up_with_renders_outside_the_training_set():
    real = bench.heldout_real_images(40, 8, num_images=100, size=16, seed=0)  # 10 held out, 5 per class needed
    heldout = ShapesDataset(100, 16, 0, split="heldout")
    renders = {np.array(image).tobytes(): label for image, label in (heldout.image(i) for i in range(len(heldout)))}
    renders |= {np.array(image).tobytes(): label for image, label in (render_shape(0, i, 16) for i in range(100, 140))}
    training = {np.array(image).tobytes() for image, _ in (render_shape(0, i, 16) for i in
                                                             split_indices(100, 0, "train"))}
    images = [image.permute(1, 2, 0).numpy().tobytes() for image in real]
    assert len(set(images)) == 40 and set(images) <= set(renders) and not set(images) & training
    assert np.bincount([renders[image] for image in images], minlength=8).tolist() == [5] * 8


def test_require_positive_names_the_first_bad_option(capsys):
    parser = argparse.ArgumentParser(prog="bench")
    bench.require_positive(parser, argparse.Namespace(runs=1, time_steps=2), ["runs", "time_steps"])
    with pytest.raises(SystemExit):
        bench.require_positive(parser, argparse.Namespace(runs=1, time_steps=0), ["runs", "time_steps"])
    assert "--time-steps must be >= 1, got 0" in capsys.readouterr().err


def test_proportional_labels_follow_the_real_class_proportions():
    assert bench.proportional_labels(6, [0, 0, 1]) == [0, 0, 1, 0, 0, 1]
    with pytest.raises(ValueError, match="no labelled images"):
        bench.proportional_labels(3, [])


def test_real_images_of_a_folder_or_of_the_shapes(tmp_path):
    from genaccel.data.shapes import save_shapes

    save_shapes(tmp_path / "data", num_images=40, size=16, seed=0, progress=False)
    images, labels = bench.real_images({"data": "elsewhere"}, 7, 8, str(tmp_path / "data" / "heldout"))
    heldout = ShapesDataset(40, 16, 0, split="heldout")
    assert images.dtype == torch.uint8 and len(images) == len(heldout)
    assert labels == [heldout.image(k % len(heldout))[1] for k in range(7)]
    shapes = {"data": "shapes", "num_images": 400, "image_size": 16, "data_seed": 0}
    images, labels = bench.real_images(shapes, 16, 8, None)
    assert torch.equal(images, bench.heldout_real_images(16, 8, 400, 16, 0)) and labels == bench.balanced_labels(16, 8)
    with pytest.raises(ValueError, match="pass --real"):
        bench.real_images({"data": "/data/emoji32/train"}, 4, 8, None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bench.real_images({"data": "shapes"}, 4, 8, str(tmp_path / "missing"))


def test_model_folder_takes_a_kind_or_a_bundle(tmp_path):
    assert bench.model_folder("image") == bench.REFERENCE_DIRS["image"]
    (tmp_path / "manifest.json").write_text("{}")
    assert bench.model_folder(str(tmp_path)) == tmp_path
    with pytest.raises(ValueError, match="bundled pipeline folder"):
        bench.model_folder(str(tmp_path / "missing"))
