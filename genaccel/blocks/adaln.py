"""adaLN modulation: a conditioning vector shifts and scales normalised tokens (DiT's adaLN-Zero)."""

from __future__ import annotations

import torch


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) normalised; shift, scale (B, C): x * (1 + scale) + shift, as in DiT."""
    return x * (1 + scale[:, None]) + shift[:, None]
