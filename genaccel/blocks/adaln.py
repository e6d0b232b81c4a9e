"""adaLN modulation: a conditioning vector shifts and scales normalised tokens (DiT's adaLN-Zero)."""

from __future__ import annotations

import math

import torch


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) normalised; shift, scale (B, C): x * (1 + scale) + shift, as in DiT."""
    return x * (1 + scale[:, None]) + shift[:, None]


def check_block_inputs(hidden_states: torch.Tensor, grid: tuple[int, ...], has_cross_attention: bool,
                       encoder_hidden_states: torch.Tensor | None) -> tuple[int, ...]:
    """Validate a block's tokens against its grid and its text input against how it was built."""
    grid = tuple(int(g) for g in grid)
    if math.prod(grid) != hidden_states.shape[1]:
        raise ValueError(f"grid {grid} does not match the {hidden_states.shape[1]} tokens")
    if has_cross_attention != (encoder_hidden_states is not None):
        raise ValueError("encoder_hidden_states must be given exactly when the block was built with "
                         f"cross_attention_dim (it was {'' if has_cross_attention else 'not '}built with it)")
    return grid
