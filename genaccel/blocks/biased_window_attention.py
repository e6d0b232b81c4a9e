"""Window attention with a learned relative position bias (Swin), on genaccel.attention's windows.

`genaccel.attention.window_attention` has no bias argument, so this module runs the same
partition (`genaccel.attention.partition.window_partition`: padded, optionally shifted windows
that never span the true grid border) through one batched SDPA call with an additive
(heads, W, W) bias that is shared by every window. Inside a window, the offset between two slots
equals the offset between the two tokens on the grid, so the bias depends only on grid offsets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genaccel.attention.partition import normalize_window, window_partition


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


def biased_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, ...],
                            window: int | tuple[int, ...], shift: bool, bias: torch.Tensor | None, *,
                            scale: float | None = None) -> torch.Tensor:
    """`window_attention(q, k, v, grid, window, shift)` plus `bias` (heads, W, W) on every window's logits.

    `bias` must be built for the clamped window `normalize_window(grid, window)`. q, k, v:
    (B, heads, N, D); returns (B, heads, N, D).
    """
    batch, heads, n_tokens, dim = q.shape
    if math.prod(grid) != n_tokens:
        raise ValueError(f"grid {tuple(grid)} does not match the {n_tokens} tokens")
    window = normalize_window(tuple(grid), window)
    part = window_partition(tuple(grid), window, shift, q.device)
    size, windows = part.window_size, part.num_windows
    if bias is not None and bias.shape != (heads, size, size):
        raise ValueError(f"bias must have shape (heads, W, W) = {(heads, size, size)}, got {tuple(bias.shape)}")
    gather = lambda t: part.to_windows(t).view(batch, heads, windows, size, dim)  # noqa: E731
    mask = None
    if bias is not None:
        mask = bias.to(q.dtype)[:, None].expand(heads, windows, size, size)
    if part.has_padding:
        pad = torch.zeros(part.valid.shape, dtype=q.dtype, device=q.device).masked_fill(~part.valid, float("-inf"))
        pad = pad[None, :, None, :]
        mask = pad if mask is None else mask + pad
    out = F.scaled_dot_product_attention(gather(q), gather(k), gather(v), attn_mask=mask, scale=scale)
    return part.from_windows(out.reshape(batch, heads, windows * size, dim))
