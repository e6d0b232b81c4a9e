"""Finite scalar quantization (FSQ, Mentzer et al. 2023): each latent channel is bounded and rounded to
one of `levels[c]` values; a token's code is the mixed-radix number of its channels' digits.

There is no codebook to learn, so it cannot collapse; the codebook size is prod(levels). Rounding
passes gradients straight through (the quantized value in the forward pass, the identity backward).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class FSQ(nn.Module):
    """Quantize (..., len(levels)) latents; `codes` / `from_codes` map to and from integer indices."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if not levels or any(level < 2 for level in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels = levels
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        basis = [math.prod(levels[:k]) for k in range(len(levels))]
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z so that rounding gives levels[c] integer values per channel (centred; even counts
        sit on half-integers before the shift)."""
        half = (self._levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantized latents in [-1, 1] (same shape as z), straight-through gradients."""
        if z.shape[-1] != len(self.levels):
            raise ValueError(f"FSQ with {len(self.levels)} levels needs latents of {len(self.levels)} channels "
                             f"in the last dimension, got shape {tuple(z.shape)}")
        bounded = self._bound(z.float())
        quantized = bounded + (bounded.round() - bounded).detach()
        return (quantized / (self._levels // 2)).to(z.dtype)

    def codes(self, quantized: torch.Tensor) -> torch.Tensor:
        """Integer codes in [0, codebook_size) of quantized latents (the output of `forward`)."""
        half = self._levels // 2
        digits = (quantized.float() * half + half).round().long()
        return (digits * self._basis).sum(-1)

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The quantized latents (..., channels) of integer codes."""
        if codes.dtype not in (torch.int32, torch.int64) or codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must be integers in [0, {self.codebook_size}), got {codes.dtype} in "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        levels = self._levels.long()
        digits = (codes.long()[..., None] // self._basis) % levels
        half = self._levels // 2
        return (digits.float() - half) / half
