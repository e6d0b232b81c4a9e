"""Short synthetic videos of moving, rotating textured shapes: a video dataset the project makes itself.

Each clip is a (T, H, W, 3) uint8 array and a function of (seed, index) only. A shape of class
`index % len(SHAPE_CLASSES)` moves along a straight line (bouncing off the borders) and rotates
at a constant speed over a drifting textured background, so consecutive frames are strongly
correlated the way real video is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from genaccel.data.shapes import SHAPE_CLASSES, _random_colour, _texture, split_indices, write_labels

_MIN_FRAMES = 2


def _bounce(position: float, low: float, high: float) -> float:
    """Fold a position on an unbounded line back into [low, high] (reflecting borders)."""
    span = high - low
    offset = (position - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


def render_video(seed: int, index: int, size: int = 32, num_frames: int = 16) -> tuple[np.ndarray, int]:
    """Clip `index` of the dataset with `seed`: ((num_frames, size, size, 3) uint8, class label)."""
    if not isinstance(size, int) or not 16 <= size <= 64:
        raise ValueError(f"size must be an int in [16, 64] pixels, got {size!r}")
    if not isinstance(num_frames, int) or num_frames < _MIN_FRAMES:
        raise ValueError(f"num_frames must be an int >= {_MIN_FRAMES}, got {num_frames!r}")
    rng = np.random.default_rng([seed, index, 0x71DE0])
    label = index % len(SHAPE_CLASSES)
    side = size * 2
    background = _texture(rng, side * 2) * 0.6 + 255 * 0.4 * rng.uniform(0, 1)
    foreground = _texture(rng, side)
    outline = _random_colour(rng)
    radius = side * rng.uniform(0.16, 0.26)
    x, y = rng.uniform(radius, side - radius, size=2)
    speed = side * rng.uniform(0.02, 0.06)
    heading = rng.uniform(0, 2 * math.pi)
    spin = rng.uniform(-0.25, 0.25)
    rotation = rng.uniform(0, 2 * math.pi)
    drift = rng.uniform(-1.0, 1.0, size=2) * side * 0.01
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        cx = _bounce(x + t * speed * math.cos(heading), radius, side - radius)
        cy = _bounce(y + t * speed * math.sin(heading), radius, side - radius)
        ox, oy = (int(round(t * drift[0])) % side, int(round(t * drift[1])) % side)
        canvas = background[oy:oy + side, ox:ox + side]
        mask = _moving_mask(label, side, (cx, cy), radius, rotation + t * spin)
        edge = _moving_mask(label, side, (cx, cy), radius * 1.12, rotation + t * spin) & ~mask
        pixels = np.where(mask[..., None], foreground, np.where(edge[..., None], outline, canvas))
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
        frames[t] = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))
    return frames, label


def _moving_mask(label: int, side: int, centre: tuple[float, float], radius: float, rotation: float) -> np.ndarray:
    """Boolean mask of shape class `label` centred at `centre` with the given radius and rotation."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    name = SHAPE_CLASSES[label]
    cx, cy = centre
    corners = {"triangle": 3, "square": 4, "diamond": 4, "hexagon": 6, "star": 5, "cross": 4}
    if name in ("circle", "ring"):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        if name == "ring":
            hole = radius * 0.55
            draw.ellipse((cx - hole, cy - hole, cx + hole, cy + hole), fill=0)
    else:
        steps = corners[name] * (2 if name in ("star", "cross") else 1)
        inner = {"star": 0.45, "cross": 0.42}.get(name)
        stretch = 0.6 if name == "diamond" else 1.0
        points = []
        for k in range(steps):
            r = radius * (inner if inner is not None and k % 2 else 1.0)
            a = 2 * math.pi * k / steps
            px, py = r * math.cos(a) * stretch, r * math.sin(a)
            c, s = math.cos(rotation), math.sin(rotation)
            points.append((cx + c * px - s * py, cy + s * px + c * py))
        draw.polygon(points, fill=255)
    return np.asarray(mask) > 127


class ShapeVideosDataset(Dataset):
    """Clips rendered on the fly: items are ((T, 3, H, W) float32 tensor in [-1, 1], label)."""

    def __init__(self, num_videos: int = 200, size: int = 32, num_frames: int = 16, seed: int = 0,
                 split: str = "train", heldout_fraction: float = 0.1) -> None:
        render_video(seed, 0, size, num_frames)  # validates size and num_frames
        self.size, self.num_frames, self.seed = size, num_frames, seed
        self.indices = split_indices(num_videos, seed, split, heldout_fraction)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        frames, label = render_video(self.seed, self.indices[item], self.size, self.num_frames)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0, label


def save_videos(out_dir: str | Path, num_videos: int, size: int = 32, num_frames: int = 16, seed: int = 0,
                heldout_fraction: float = 0.1, progress: bool = True) -> dict[str, int]:
    """Write clips as `.npy` (T, H, W, 3) uint8 into `out_dir/train` and `out_dir/heldout` with labels.csv."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    counts = {}
    for split in ("train", "heldout"):
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        indices = split_indices(num_videos, seed, split, heldout_fraction)
        files, labels = [], []
        for index in tqdm(indices, desc=f"videos/{split}", disable=not progress):
            frames, label = render_video(seed, index, size, num_frames)
            name = f"{index:06d}.npy"
            np.save(folder / name, frames, allow_pickle=False)
            files.append(name)
            labels.append(label)
        write_labels(folder, files, labels, SHAPE_CLASSES)
        counts[split] = len(files)
    return counts
