"""Fidelity of an accelerated output to the dense output with the same prompt and seed.

PSNR and SSIM come from torchmetrics (data range 1, images scaled from uint8). LPIPS needs a
pretrained backbone that cannot be downloaded here; `lpips_scorer` says why it is then
reported as not computed instead of silently substituting another metric.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _as_batch(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (T, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    frames = array[None] if array.ndim == 3 else array
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: output shapes differ ({a.shape} vs {b.shape}); PSNR/SSIM compare "
                         "outputs of the same size")


def psnr(a: np.ndarray, b: np.ndarray, what: str = "pair") -> float:
    """PSNR in dB between two uint8 images (or videos) of the same shape; inf when identical."""
    _check_pair(a, b, what)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(_as_batch(a), _as_batch(b), data_range=1.0))


def ssim(a: np.ndarray, b: np.ndarray, what: str = "pair") -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5) between two uint8 images (or videos' frames)."""
    _check_pair(a, b, what)
    return float(structural_similarity_index_measure(_as_batch(a), _as_batch(b), data_range=1.0))


def lpips_scorer() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str | None]:
    """(score function, None) where LPIPS (AlexNet) can run, else (None, why it is not computed)."""
    missing = [name for name in ("lpips", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        return None, (f"LPIPS not computed: needs the {' and '.join(missing)} package(s) and the pretrained "
                      "AlexNet weights, which no registry package available here ships")
    try:
        import lpips

        model = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as error:  # offline weight downloads fail in many ways; report, never substitute
        return None, f"LPIPS not computed: loading its weights failed ({type(error).__name__}: {error})"

    @torch.inference_mode()
    def score(a: np.ndarray, b: np.ndarray) -> float:
        _check_pair(a, b, "LPIPS pair")
        return float(model(_as_batch(a) * 2 - 1, _as_batch(b) * 2 - 1).mean())

    return score, None
