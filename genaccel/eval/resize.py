"""Image preprocessing for FID: quantise to uint8, resize to 299, scale to the Inception's range.

Two modes, because the resize filter moves FID by whole points:
- `legacy-tf` (default; ADM / TTUR / NVlabs numbers): TF1 `resize_bilinear` with
  align_corners=False and no half-pixel centres (source = destination * in / out), no antialias.
- `clean` (clean-fid): PIL bicubic resize of each channel as float32, clipped to [0, 255].
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

INCEPTION_SIZE = 299
MODES = ("legacy-tf", "clean")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown FID preprocessing mode {mode!r}; accepted: {', '.join(MODES)}")
    return mode


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images unchanged; float images in [0, 1] scaled by 255 and rounded (not floored)."""
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {images.dtype}")
    return (images.float() * 255).round_().clamp_(0, 255).to(torch.uint8)


def legacy_tf_weights(in_size: int, out_size: int) -> torch.Tensor:
    """(out, in) matrix of TF1 legacy bilinear resize along one axis."""
    source = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    lower = source.floor().long().clamp_(max=in_size - 1)
    upper = (lower + 1).clamp_(max=in_size - 1)
    frac = source - lower
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lower), 1 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights


def resize_legacy_tf(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """TF1 legacy bilinear resize of (N, C, H, W) images to (N, C, size, size), float32."""
    x = images.float()
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x
    rows = legacy_tf_weights(height, size).to(x)
    cols = legacy_tf_weights(width, size).to(x)
    return torch.einsum("oh,nchw,pw->ncop", rows, x, cols)


def resize_clean(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """clean-fid's resize: PIL bicubic on each float32 channel, clipped to [0, 255]."""
    batch = images.detach().cpu().float().numpy()
    out = np.empty((*batch.shape[:2], size, size), dtype=np.float32)
    for index in np.ndindex(*batch.shape[:2]):
        channel = Image.fromarray(batch[index], mode="F").resize((size, size), resample=Image.BICUBIC)
        out[index] = np.asarray(channel)
    return torch.from_numpy(out.clip(0, 255)).to(images.device)


def preprocess(images: torch.Tensor, mode: str = "legacy-tf") -> torch.Tensor:
    """(N, 3, H, W) uint8 or [0, 1] float images -> float (N, 3, 299, 299) in (x - 128) / 128."""
    check_mode(mode)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    x = to_uint8(images)
    x = resize_legacy_tf(x) if mode == "legacy-tf" else resize_clean(x)
    return (x - 128) / 128
