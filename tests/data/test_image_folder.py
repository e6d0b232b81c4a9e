import pytest
import torch
from PIL import Image

from genaccel.data.image_folder import ImageFolderDataset
from genaccel.data.shapes import save_shapes


def _write(folder, name, size=(8, 8), colour=(10, 20, 30)):
    Image.new("RGB", size, colour).save(folder / name)


def test_reads_images_and_labels(tmp_path):
    save_shapes(tmp_path, num_images=10, size=16, seed=0, progress=False)
    dataset = ImageFolderDataset(tmp_path / "train")
    assert len(dataset) == 9 and dataset.size == (16, 16) and dataset.num_classes == 8
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0


def test_corrupt_file_is_named(tmp_path):
    _write(tmp_path, "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png"):
        ImageFolderDataset(tmp_path)


def test_truncated_file_is_named(tmp_path):
    _write(tmp_path, "a.png", size=(64, 64))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="b.png"):
        ImageFolderDataset(tmp_path)


def test_mixed_sizes_name_both_files(tmp_path):
    _write(tmp_path, "a.png", size=(8, 8))
    _write(tmp_path, "b.png", size=(8, 9))
    with pytest.raises(ValueError, match=r"mixed sizes: a.png is 8x8 but b.png is 8x9"):
        ImageFolderDataset(tmp_path)


def test_missing_folder_empty_folder_and_missing_label(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no images"):
        ImageFolderDataset(tmp_path)
    _write(tmp_path, "a.png")
    _write(tmp_path, "b.png")
    (tmp_path / "labels.csv").write_text("file,label\na.png,0\n")
    with pytest.raises(ValueError, match="no label for 1 image"):
        ImageFolderDataset(tmp_path)


def test_without_labels_file_everything_is_class_zero(tmp_path):
    _write(tmp_path, "a.png")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.labels == [0] and dataset.num_classes == 1
