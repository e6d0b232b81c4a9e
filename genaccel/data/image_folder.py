"""A torch Dataset over a folder of images of one size, with optional class labels (labels.csv).

Every file is checked when the dataset is built: a file Pillow cannot decode is named in the
error, and so are two files of different sizes, because a silently resized or skipped image
changes what a model learns or what FID measures.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _read_labels(folder: Path, files: list[Path]) -> tuple[list[int], list[str] | None]:
    """Labels from `labels.csv` (columns file,label); every image must have one. No file: all 0."""
    labels_path = folder / "labels.csv"
    classes_path = folder / "classes.txt"
    classes = classes_path.read_text().split("\n") if classes_path.exists() else None
    classes = [name for name in classes if name] if classes is not None else None
    if not labels_path.exists():
        return [0] * len(files), classes
    with labels_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{labels_path} must have a header with columns 'file,label'")
        table = {}
        for row in reader:
            try:
                table[row["file"]] = int(row["label"])
            except ValueError:
                raise ValueError(f"{labels_path}: label {row['label']!r} of {row['file']!r} is not an int") from None
    missing = [path.name for path in files if path.name not in table]
    if missing:
        raise ValueError(f"{labels_path} has no label for {len(missing)} image(s), e.g. {missing[0]!r}")
    labels = [table[path.name] for path in files]
    if min(labels) < 0 or (classes is not None and max(labels) >= len(classes)):
        raise ValueError(f"{labels_path}: labels must be in [0, number of classes)")
    return labels, classes


class ImageFolderDataset(Dataset):
    """Images of `folder` (sorted by name) as (3, H, W) float32 tensors in [-1, 1], with int labels."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {self.folder} does not exist or is not a directory")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"image folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.size = self._check_images()
        self.labels, self.classes = _read_labels(self.folder, self.files)

    def _check_images(self) -> tuple[int, int]:
        """Decode every file once; return the common (width, height)."""
        size, first = None, None
        for path in self.files:
            try:
                with Image.open(path) as image:
                    image.load()
                    this_size = image.size
            except (UnidentifiedImageError, OSError, SyntaxError) as error:
                raise ValueError(f"cannot decode image file {path}: {error}") from None
            if size is None:
                size, first = this_size, path
            elif this_size != size:
                raise ValueError(f"images have mixed sizes: {first.name} is {size[0]}x{size[1]} but "
                                 f"{path.name} is {this_size[0]}x{this_size[1]}; all must be the same size")
        return size

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else max(self.labels) + 1

    def __len__(self) -> int:
        return len(self.files)

    def image(self, item: int) -> Image.Image:
        """The RGB PIL image of item `item`."""
        with Image.open(self.files[item]) as image:
            return image.convert("RGB")

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        array = np.asarray(self.image(item), dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0, self.labels[item]
