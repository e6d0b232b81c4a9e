"""Clips of one or two colour emoji gliding, turning and growing/shrinking over a coloured
background: a video dataset of real artwork (the glyphs of `genaccel.data.emoji`).

Clip `index` of a split is a function of (seed, split, index, size, frames) and the font only. Its
glyphs come from that split's glyphs (`split_emoji`), so held-out clips show only held-out glyphs.
Motion is smooth: each glyph moves at constant velocity between two points that keep it inside the
frame, turns at a constant rate and breathes in size along a sine, all drawn with sub-pixel
precision at twice the size and downscaled with Lanczos. The background is a linear gradient
between two colours or a soft stripes/checker/dots texture, drifting slowly. The label is the
Unicode group of the first (front, larger) glyph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from genaccel.data.clip_folder import ClipFolderDataset
from genaccel.data.emoji import (GROUPS, Emoji, _check_size, emoji_sprite, load_font, split_emoji,
                                 write_metadata)
from genaccel.data.shapes import _random_colour, _texture, write_labels

MIN_FRAMES = 2
MAX_VIDEO_SIZE = 128
_SPLIT_CODES = {"train": 1, "heldout": 2}


def _check_frames(num_frames: int) -> None:
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < MIN_FRAMES:
        raise ValueError(f"num_frames must be an int >= {MIN_FRAMES}, got {num_frames!r}")


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A (side, side, 3) float background: a two-colour gradient or a softened texture."""
    if rng.uniform() < 0.5:
        first, second = _random_colour(rng), _random_colour(rng)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
        angle = rng.uniform(0, 2 * math.pi)
        along = xx * math.cos(angle) + yy * math.sin(angle)
        mix = ((along - along.min()) / max(float(np.ptp(along)), 1e-6))[..., None]
        return first * (1 - mix) + second * mix
    return _texture(rng, side) * 0.5 + 255 * 0.5 * rng.uniform(0.3, 1.0)


def _glyph_layer(small: Image.Image, side: int, centre: tuple[float, float], extent: float,
                 angle: float) -> Image.Image:
    """`small` (a square RGBA sprite) turned by `angle` radians, `extent` px wide, centred at `centre`."""
    ratio = small.width / extent  # sprite px per canvas px (about 1: the sprite is pre-scaled)
    c, s = math.cos(angle) * ratio, math.sin(angle) * ratio
    half = small.width / 2
    # canvas (x, y) samples sprite (half + c (x - cx) + s (y - cy), half - s (x - cx) + c (y - cy))
    matrix = (c, s, half - c * centre[0] - s * centre[1], -s, c, half + s * centre[0] - c * centre[1])
    return small.transform((side, side), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC)


def choose_glyphs(emojis: Sequence[Emoji], seed: int, split: str, index: int,
                  heldout_fraction: float = 0.1) -> tuple[list[Emoji], np.random.Generator]:
    """The glyphs of clip `index` of `split` and the generator that then draws its motion."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    pool = split_emoji(emojis, seed, split, heldout_fraction)
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index, 0xE3071])
    count = 1 + int(rng.uniform() < 0.5)
    return [pool[int(k)] for k in rng.choice(len(pool), size=min(count, len(pool)), replace=False)], rng


def render_emoji_video(seed: int, split: str, index: int, size: int = 64, num_frames: int = 16,
                       heldout_fraction: float = 0.1, font: str | Path | None = None
                       ) -> tuple[np.ndarray, int, list[Emoji]]:
    """Clip `index` of `split`: ((num_frames, size, size, 3) uint8, group of its first glyph, its glyphs)."""
    _check_size(size, high=MAX_VIDEO_SIZE)
    _check_frames(num_frames)
    glyphs, rng = choose_glyphs(load_font(font)[1], seed, split, index, heldout_fraction)
    side = 2 * size
    background = _background(rng, 2 * side)
    drift = rng.uniform(-1.0, 1.0, size=2) * side * 0.5  # background shift over the clip, canvas px
    start = rng.uniform(np.maximum(0, -drift), side - np.maximum(0, drift))  # window stays inside
    motions = []
    for rank, emoji in enumerate(glyphs):
        extent = side * (rng.uniform(0.42, 0.58) if rank == 0 else rng.uniform(0.28, 0.4))
        breathe, phase, cycles = rng.uniform(0.0, 0.2), rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.5)
        reach = extent * (1 + breathe) * 0.72  # half the diagonal of the largest, turned glyph
        low, high = reach, max(side - reach, reach)
        first, last = rng.uniform(low, high, size=2), rng.uniform(low, high, size=2)
        angle, spin = rng.uniform(-0.35, 0.35), rng.uniform(-1.2, 1.2)  # radians; spin over the clip
        sprite = emoji_sprite(emoji, font)
        small = sprite.resize((math.ceil(extent * (1 + breathe)),) * 2, Image.Resampling.LANCZOS)
        motions.append((small, extent, breathe, phase, cycles, first, last, angle, spin))
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        u = t / (num_frames - 1)
        ox, oy = (start + u * drift).round().astype(int)
        canvas = Image.fromarray(background[oy:oy + side, ox:ox + side].clip(0, 255).astype(np.uint8), "RGB")
        canvas = canvas.convert("RGBA")
        for small, extent, breathe, phase, cycles, first, last, angle, spin in reversed(motions):
            width = extent * (1 + breathe * math.sin(2 * math.pi * cycles * u + phase))
            centre = tuple(first + u * (last - first))
            canvas.alpha_composite(_glyph_layer(small, side, centre, width, angle + u * spin))
        frames[t] = np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    return frames, glyphs[0].group, glyphs


def save_emoji_videos(out_dir: str | Path, num_videos: int = 1000, size: int = 64, num_frames: int = 16,
                      seed: int = 0, heldout_fraction: float = 0.1, font: str | Path | None = None,
                      progress: bool = True) -> dict[str, int]:
    """Write clips as `.npy` (T, H, W, 3) uint8 into `out_dir/train` and `out_dir/heldout`, with
    labels.csv, classes.txt (GROUPS) and glyphs.csv (file, glyph names), plus `out_dir/emoji.json`.

    `num_videos` is split like the glyphs: round(num_videos * heldout_fraction) held-out clips.
    """
    from tqdm.auto import tqdm

    _check_size(size, high=MAX_VIDEO_SIZE)
    _check_frames(num_frames)
    if not isinstance(num_videos, int) or num_videos < 2:
        raise ValueError(f"num_videos must be an int >= 2 so both splits are non-empty, got {num_videos!r}")
    parsed, emojis = load_font(font)
    split_emoji(emojis, seed, "heldout", heldout_fraction)  # validates the fraction
    num_heldout = max(1, round(num_videos * heldout_fraction))
    out_dir = Path(out_dir)
    counts = {}
    for split, count in (("train", num_videos - num_heldout), ("heldout", num_heldout)):
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        files, labels, rows = [], [], ["file,glyphs"]
        for index in tqdm(range(count), desc=f"emoji-videos/{split}", disable=not progress):
            frames, label, glyphs = render_emoji_video(seed, split, index, size, num_frames, heldout_fraction,
                                                       parsed.path)
            name = f"{index:06d}.npy"
            np.save(folder / name, frames, allow_pickle=False)
            files.append(name)
            labels.append(label)
            rows.append(f"{name},{' '.join(e.name for e in glyphs)}")
        write_labels(folder, files, labels, GROUPS)
        (folder / "glyphs.csv").write_text("\n".join(rows) + "\n")
        counts[split] = len(files)
    write_metadata(out_dir, parsed, kind="emoji-videos", size=size, frames=num_frames, seed=seed,
                   heldout_fraction=heldout_fraction, glyphs=len(emojis), **counts)
    return counts


class EmojiVideoDataset(ClipFolderDataset):
    """A split folder written by `save_emoji_videos`: items are ((T, 3, H, W) float32 in [-1, 1], group)."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        super().__init__(Path(root) / split)
        self.classes = list(GROUPS)
