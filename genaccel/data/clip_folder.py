"""A folder of video clips as written by `genaccel make-data videos|emoji-videos`: `labels.csv`
(file,label), `classes.txt` (one class name a line, optional) and one `.npy` (T, H, W, 3) uint8 per clip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class ClipFolderDataset(Dataset):
    """Items are ((T, 3, H, W) float32 in [-1, 1], label). Every clip is opened (memory-mapped) when the
    dataset is built: a missing or unreadable file, or clips of different shapes, is an error naming it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        labels_path = self.folder / "labels.csv"
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path} does not exist; write clips with `genaccel make-data "
                                    "emoji-videos` (or `videos`)")
        with labels_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError(f"{labels_path} lists no clips")
        if not {"file", "label"} <= set(rows[0]):
            raise ValueError(f"{labels_path} needs the columns file,label; it has {sorted(rows[0])}")
        self.files = [self.folder / row["file"] for row in rows]
        self.labels = [int(row["label"]) for row in rows]
        shapes = {}
        for path in self.files:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read clip {path}: {error}") from None
            if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
                raise ValueError(f"clip {path} is {array.dtype} {array.shape}; expected uint8 (T, H, W, 3)")
            shapes.setdefault(array.shape, path)
            if len(shapes) > 1:
                (first, a), (second, b) = list(shapes.items())[:2]
                raise ValueError(f"clips differ in shape: {a.name} is {first}, {b.name} is {second} (T, H, W, 3)")
        frames, height, width, _ = next(iter(shapes))
        self.shape = (frames, 3, height, width)
        classes_path = self.folder / "classes.txt"
        self.classes = classes_path.read_text().splitlines() if classes_path.is_file() else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        frames = np.load(self.files[item], allow_pickle=False)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0, self.labels[item]
