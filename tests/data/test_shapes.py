import csv
import hashlib

import numpy as np
import pytest
import torch

from genaccel.cli import main
from genaccel.data.shapes import SHAPE_CLASSES, ShapesDataset, render_shape, save_shapes, split_indices


def _digest(seed: int, indices, size: int = 32) -> str:
    hasher = hashlib.sha256()
    for index in indices:
        hasher.update(render_shape(seed, index, size)[0].tobytes())
    return hasher.hexdigest()


def test_same_seed_gives_same_bytes_and_other_seed_differs():
    assert _digest(3, range(12)) == _digest(3, range(12))
    assert _digest(3, range(12)) != _digest(4, range(12))


def test_images_are_rgb_of_requested_size_and_labels_cycle_through_classes():
    for size in (16, 32, 64):
        image, label = render_shape(0, 11, size)
        assert image.mode == "RGB" and image.size == (size, size)
        assert label == 11 % len(SHAPE_CLASSES)


def test_images_differ_from_each_other():
    arrays = [np.asarray(render_shape(0, i)[0]) for i in range(16)]
    assert len({a.tobytes() for a in arrays}) == 16
    assert all(a.std() > 5 for a in arrays)  # not blank


def test_heldout_split_is_disjoint_deterministic_and_covers_everything():
    train = split_indices(1000, 7, "train")
    heldout = split_indices(1000, 7, "heldout")
    assert len(heldout) == 100 and len(train) == 900
    assert not set(train) & set(heldout)
    assert sorted(train + heldout) == list(range(1000))
    assert heldout == split_indices(1000, 7, "heldout")
    assert heldout != split_indices(1000, 8, "heldout")


def test_dataset_items_are_tensors_in_range_matching_the_rendered_image():
    dataset = ShapesDataset(num_images=40, size=32, seed=1, split="heldout")
    assert len(dataset) == 4
    tensor, label = dataset[2]
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    image, expected_label = render_shape(1, dataset.indices[2], 32)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    assert torch.equal(((tensor + 1) * 127.5).round(), pixels)
    assert label == expected_label


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 8}, "size must be"), ({"split": "test"}, "split must be"),
    ({"heldout_fraction": 1.5}, "heldout_fraction"), ({"num_images": 1}, "num_images"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesDataset(**{"num_images": 20, **kwargs})


def test_save_shapes_writes_pngs_and_labels_equal_to_rendering(tmp_path):
    from PIL import Image

    counts = save_shapes(tmp_path, num_images=20, size=16, seed=2, progress=False)
    assert counts == {"train": 18, "heldout": 2}
    with (tmp_path / "train" / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18
    for row in rows[:5]:
        index = int(row["file"].removesuffix(".png"))
        image, label = render_shape(2, index, 16)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "train" / row["file"])), np.asarray(image))
        assert int(row["label"]) == label
    assert (tmp_path / "train" / "classes.txt").read_text().split() == list(SHAPE_CLASSES)


def test_make_data_cli(tmp_path, capsys):
    assert main(["make-data", "shapes", str(tmp_path / "s"), "--num", "10", "--size", "16", "--seed", "1"]) == 0
    assert len(list((tmp_path / "s" / "train").glob("*.png"))) == 9
    assert main(["make-data", "videos", str(tmp_path / "v"), "--num", "10", "--frames", "3"]) == 0
    assert len(list((tmp_path / "v" / "heldout").glob("*.npy"))) == 1
    assert main(["make-data", "shapes", str(tmp_path / "x"), "--size", "65"]) == 2
    assert "size must be an int in [16, 64]" in capsys.readouterr().err
