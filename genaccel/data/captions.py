"""A captioning task the project generates itself: images of coloured shapes with template captions.

Used to train a small LLaVA-architecture target (and a FLASH draft head against it) where no hub
weights may be downloaded. Every image is drawn from a seed, and its caption is a deterministic
function of what is drawn, so a model can learn the task and its outputs can be checked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 230), "yellow": (240, 220, 40),
    "purple": (150, 50, 180), "orange": (250, 140, 20), "black": (15, 15, 15), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
NUMBER_WORDS = ("zero", "one", "two", "three")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")
PROMPT = "describe the image ."
CAPTION_WORDS = ("the image shows shape shapes . there is a at on background is describe "
                 "user assistant :").split()


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    color: str
    size: str
    row: int
    column: int

    def phrase(self) -> str:
        return (f"there is a {self.size} {self.color} {self.shape} at the "
                f"{ROWS[self.row]} {COLUMNS[self.column]} .")


@dataclass(frozen=True)
class CaptionSample:
    image: Image.Image
    caption: str
    shapes: tuple[ShapeSpec, ...]
    background: str


def caption_for(shapes: tuple[ShapeSpec, ...], background: str) -> str:
    """The template caption: shapes listed in reading order (row, then column)."""
    count = NUMBER_WORDS[len(shapes)] + (" shape" if len(shapes) == 1 else " shapes")
    ordered = sorted(shapes, key=lambda s: (s.row, s.column))
    body = " ".join(s.phrase() for s in ordered)
    return f"the image shows {count} . {body} the background is {background} ."


def _draw_shape(draw: ImageDraw.ImageDraw, spec: ShapeSpec, image_size: int) -> None:
    cell = image_size / 3
    radius = cell * (0.45 if spec.size == "large" else 0.25)
    cx, cy = (spec.column + 0.5) * cell, (spec.row + 0.5) * cell
    color = COLORS[spec.color]
    if spec.shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif spec.shape == "square":
        draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                     fill=color)


def make_sample(seed: int, image_size: int = 32, max_shapes: int = 3) -> CaptionSample:
    """One image with 1..max_shapes shapes in distinct grid cells, and its caption."""
    if not 1 <= max_shapes <= 3:
        raise ValueError(f"max_shapes must be in 1..3, got {max_shapes}")
    rng = random.Random(seed)
    background = rng.choice(list(COLORS))
    cells = rng.sample(range(9), rng.randint(1, max_shapes))
    shapes = tuple(
        ShapeSpec(shape=rng.choice(SHAPES), color=rng.choice([c for c in COLORS if c != background]),
                  size=rng.choice(SIZES), row=cell // 3, column=cell % 3)
        for cell in cells
    )
    image = Image.new("RGB", (image_size, image_size), COLORS[background])
    draw = ImageDraw.Draw(image)
    for spec in shapes:
        _draw_shape(draw, spec, image_size)
    return CaptionSample(image=image, caption=caption_for(shapes, background), shapes=shapes,
                         background=background)


def caption_vocabulary() -> list[str]:
    """Every word a prompt or caption can contain, special tokens first (fixed order)."""
    words = list(CAPTION_WORDS) + list(COLORS) + list(SHAPES) + list(SIZES) + list(ROWS)
    words += list(COLUMNS) + list(NUMBER_WORDS)
    seen: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    for word in words:
        seen.setdefault(word, None)
    return list(seen)


def build_caption_tokenizer(vocabulary: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (Hugging Face `tokenizers`) over `vocabulary` (default: the caption
    vocabulary of this module), which must start with SPECIAL_TOKENS."""
    vocabulary = caption_vocabulary() if vocabulary is None else list(vocabulary)
    if tuple(vocabulary[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS or len(set(vocabulary)) != len(vocabulary):
        raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS} and hold each word once")
    vocab = {word: index for index, word in enumerate(vocabulary)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.padding_side = "left"
    return tokenizer


def image_to_array(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) array of an RGB image."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
