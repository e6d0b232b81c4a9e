"""Procedurally rendered textured shapes with class labels: an image dataset the project makes itself.

Every image is a function of (seed, index) only, so the same seed gives the same bytes on every
machine, and the held-out split is a seeded permutation of the indices. Shapes vary in colour,
texture, background, position, size and rotation, so Inception features (FID) have something to
tell apart, while a small diffusion model trained on CPU can still learn them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
)
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "gradient")
SPLITS: tuple[str, ...] = ("train", "heldout", "all")
_SUPERSAMPLE = 4
_MIN_SIZE, _MAX_SIZE = 16, 64


def _check_size(size: int) -> None:
    if not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"size must be an int in [{_MIN_SIZE}, {_MAX_SIZE}] pixels, got {size!r}")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour from a random hue, so shapes are colourful rather than grey."""
    hue = rng.uniform(0, 1)
    saturation, value = rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
    rgb = np.array([abs(((hue * 6 + offset) % 6) - 3) - 1 for offset in (0, 4, 2)]).clip(0, 1)
    return 255 * value * (1 - saturation + saturation * rgb)


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A (side, side, 3) float texture in [0, 255] of one of the TEXTURES kinds."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    first, second = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    angle = rng.uniform(0, math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    period = rng.uniform(0.12, 0.3)
    if kind == "solid":
        mix = np.zeros_like(xx)
    elif kind == "stripes":
        mix = (np.floor(along / (period / 2)) % 2).astype(np.float32)
    elif kind == "checker":
        mix = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    elif kind == "dots":
        cell_x, cell_y = (xx % period) / period - 0.5, (yy % period) / period - 0.5
        mix = (cell_x**2 + cell_y**2 < 0.09).astype(np.float32)
    else:  # gradient
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return first * (1 - mix[..., None]) + second * mix[..., None]


def _polygon(centre: tuple[float, float], radius: float, corners: int, rotation: float,
             inner: float | None = None) -> list[tuple[float, float]]:
    """Corners of a regular polygon, or of a star when `inner` (inner radius ratio) is given."""
    points = []
    steps = corners * 2 if inner is not None else corners
    for k in range(steps):
        r = radius * (inner if inner is not None and k % 2 else 1.0)
        a = rotation + 2 * math.pi * k / steps
        points.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)))
    return points


def _shape_mask(label: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """A (side, side) boolean mask of shape class `label` at a random place, size and rotation."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    radius = side * rng.uniform(0.22, 0.36)
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, side - margin), rng.uniform(margin, side - margin)
    rotation = rng.uniform(0, 2 * math.pi)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    name = SHAPE_CLASSES[label]
    if name == "circle":
        draw.ellipse(box, fill=255)
    elif name == "ring":
        draw.ellipse(box, fill=255)
        hole = radius * 0.55
        draw.ellipse((cx - hole, cy - hole, cx + hole, cy + hole), fill=0)
    elif name == "square":
        draw.polygon(_polygon((cx, cy), radius, 4, rotation), fill=255)
    elif name == "diamond":
        rhombus = [(cx + (x - cx) * 0.6, y) for x, y in _polygon((cx, cy), radius, 4, 0.0)]
        c, s = math.cos(rotation), math.sin(rotation)
        draw.polygon([(cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy))
                      for x, y in rhombus], fill=255)
    elif name == "triangle":
        draw.polygon(_polygon((cx, cy), radius, 3, rotation), fill=255)
    elif name == "hexagon":
        draw.polygon(_polygon((cx, cy), radius, 6, rotation), fill=255)
    elif name == "star":
        draw.polygon(_polygon((cx, cy), radius, 5, rotation, inner=0.45), fill=255)
    else:  # cross
        arm = radius * 0.32
        bars = [(-radius, -arm, radius, arm), (-arm, -radius, arm, radius)]
        c, s = math.cos(rotation), math.sin(rotation)
        for x0, y0, x1, y1 in bars:
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            draw.polygon([(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners], fill=255)
    return np.asarray(mask) > 127


def render_shape(seed: int, index: int, size: int = 32) -> tuple[Image.Image, int]:
    """Image `index` of the dataset with `seed`: (RGB image of size x size, class label).

    Labels cycle through SHAPE_CLASSES so every class has the same number of images.
    """
    _check_size(size)
    rng = np.random.default_rng([seed, index])
    label = index % len(SHAPE_CLASSES)
    side = size * _SUPERSAMPLE
    background = _texture(rng, side) * 0.6 + 255 * 0.4 * rng.uniform(0, 1)
    foreground = _texture(rng, side)
    mask = _shape_mask(label, side, rng)[..., None]
    pixels = np.where(mask, foreground, background).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB").resize((size, size), Image.Resampling.LANCZOS)
    return image, label


def split_indices(num_images: int, seed: int, split: str, heldout_fraction: float = 0.1) -> list[int]:
    """Indices of `split` ('train', 'heldout' or 'all'): a seeded permutation, held-out part first."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2 so both splits are non-empty, got {num_images!r}")
    if split == "all":
        return list(range(num_images))
    order = np.random.default_rng([seed, 0x5EED]).permutation(num_images)
    num_heldout = max(1, round(num_images * heldout_fraction))
    chosen = order[:num_heldout] if split == "heldout" else order[num_heldout:]
    return sorted(int(i) for i in chosen)


class ShapesDataset(Dataset):
    """Textured shapes rendered on the fly: items are (image tensor in [-1, 1], CHW float32; label).

    `num_images` is the size of the whole dataset; `split` picks its train or held-out part.
    """

    classes: tuple[str, ...] = SHAPE_CLASSES

    def __init__(self, num_images: int = 4000, size: int = 32, seed: int = 0, split: str = "train",
                 heldout_fraction: float = 0.1) -> None:
        _check_size(size)
        self.size, self.seed = size, seed
        self.indices = split_indices(num_images, seed, split, heldout_fraction)

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, item: int) -> tuple[Image.Image, int]:
        """The PIL image and label of item `item` of this split."""
        return render_shape(self.seed, self.indices[item], self.size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        image, label = self.image(item)
        return pil_to_tensor(image), label


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) float32 tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def write_labels(out_dir: Path, files: Sequence[str], labels: Sequence[int], classes: Sequence[str]) -> None:
    """Write `labels.csv` (file,label) and `classes.txt` (one class name a line) into `out_dir`."""
    rows = ["file,label"] + [f"{name},{label}" for name, label in zip(files, labels)]
    (out_dir / "labels.csv").write_text("\n".join(rows) + "\n")
    (out_dir / "classes.txt").write_text("\n".join(classes) + "\n")


def save_shapes(out_dir: str | Path, num_images: int, size: int = 32, seed: int = 0,
                heldout_fraction: float = 0.1, progress: bool = True) -> dict[str, int]:
    """Render the dataset into `out_dir/train` and `out_dir/heldout` (PNGs + labels.csv + classes.txt).

    Returns the number of images written per split.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    counts = {}
    for split in ("train", "heldout"):
        dataset = ShapesDataset(num_images, size, seed, split, heldout_fraction)
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        files, labels = [], []
        for item in tqdm(range(len(dataset)), desc=f"shapes/{split}", disable=not progress):
            image, label = dataset.image(item)
            name = f"{dataset.indices[item]:06d}.png"
            image.save(folder / name)
            files.append(name)
            labels.append(label)
        write_labels(folder, files, labels, SHAPE_CLASSES)
        counts[split] = len(files)
    return counts
