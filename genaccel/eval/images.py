"""Reading image folders for FID: sorted file lists and decoding with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` or below it, sorted; errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images (or a .npz stats file where accepted)")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"{folder} contains no images (accepted extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB array; grey and RGBA images are converted to RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot decode image {path}: {error}") from None


def save_image(array: np.ndarray, path: str | Path) -> None:
    """Save an (H, W, 3) uint8 array as PNG (lossless, so FID of saved outputs is reproducible)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
