"""Swin's learned relative position bias, as the (heads, W, W) table `window_attention` takes.

Inside a window the offset between two slots equals the offset between the two tokens on the grid,
so one table indexed by grid offset serves every window (`window_attention(..., position_bias=)`).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RelativePositionBias(nn.Module):
    """A learned bias per head and per grid offset inside a window of up to `window` (2-D or 3-D)."""

    def __init__(self, window: tuple[int, ...], num_heads: int) -> None:
        super().__init__()
        self.window = tuple(int(w) for w in window)
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.zeros(math.prod(2 * w - 1 for w in self.window), num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        self._index_cache: dict[tuple, torch.Tensor] = {}

    def _index(self, window: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = (window, str(device))
        if key not in self._index_cache:
            coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
            offsets = coords[:, :, None] - coords[:, None, :]                   # (dims, W, W)
            index = torch.zeros(offsets.shape[1:], dtype=torch.long)
            for axis, full in enumerate(self.window):
                index = index * (2 * full - 1) + offsets[axis] + full - 1
            self._index_cache[key] = index.to(device)
        return self._index_cache[key]

    def forward(self, window: tuple[int, ...]) -> torch.Tensor:
        """(heads, W, W) bias for an effective `window` no larger than the configured one."""
        window = tuple(window)
        if len(window) != len(self.window) or any(w > f for w, f in zip(window, self.window)):
            raise ValueError(f"effective window {window} exceeds the bias table's window {self.window}")
        index = self._index(window, self.table.device)
        return self.table[index].permute(2, 0, 1)
