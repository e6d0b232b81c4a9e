"""Test helpers for the eval tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genaccel.eval.images import save_image


def write_images(folder: Path, count: int, *, seed: int, size: tuple[int, int] = (32, 32),
                 low: int = 0, high: int = 256) -> Path:
    """`count` random RGB PNGs named 000.png, 001.png, ... in `folder`."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        save_image(rng.integers(low, high, (*size, 3), dtype=np.uint8), folder / f"{index:03d}.png")
    return folder
