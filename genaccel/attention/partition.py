"""Non-overlapping (optionally Swin-shifted) windows over a token grid, as gather indices.

Tokens are stored row-major over `grid` ((h, w) or (t, h, w)). A partition pads the grid so the
window divides it: at the end of each axis, and for shifted windows also at the start (by
`window - window // 2`), which reproduces Swin's shifted windows without the cyclic roll: no window
ever spans the true border of the grid. Padded slots are marked invalid and never receive weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch

from genaccel.attention.caching import cached


def normalize_window(grid: tuple[int, ...], window: int | tuple[int, ...]) -> tuple[int, ...]:
    """Validate `window` against `grid` and clamp it to the grid (a window larger than the grid
    covers the whole axis)."""
    grid = tuple(int(g) for g in grid)
    if isinstance(window, int):
        window = (window,) * len(grid)
    window = tuple(window)
    if len(window) != len(grid):
        raise ValueError(
            f"window {window} has {len(window)} dims but the token grid {grid} has {len(grid)}: "
            "use (h, w) for images and (t, h, w) for video")
    if any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in window):
        raise ValueError(f"window sizes must be positive integers, got {window}")
    return tuple(min(w, g) for w, g in zip(window, grid))


def shift_offsets(grid: tuple[int, ...], window: tuple[int, ...]) -> tuple[int, ...]:
    """Swin's shift (half a window) per axis; zero on axes the window already covers."""
    return tuple(w // 2 if w < g else 0 for w, g in zip(window, grid))


@dataclass(frozen=True)
class WindowPartition:
    grid: tuple[int, ...]
    window: tuple[int, ...]
    num_windows: int
    window_size: int            # tokens per window, padding included
    slot_to_token: torch.Tensor  # (num_windows * window_size,) token index, or N for a padded slot
    token_to_slot: torch.Tensor  # (N,) slot of each token
    valid: torch.Tensor          # (num_windows, window_size) bool, False on padded slots
    token_window: torch.Tensor   # (N,) window index of each token
    counts: torch.Tensor         # (num_windows,) real tokens per window
    gather_index: torch.Tensor   # slot_to_token with padded slots pointing at a real token
    shift: bool

    @property
    def key(self) -> tuple:
        """Identifies the partition (and its device) for caches of derived tensors."""
        return (self.grid, self.window, self.shift, str(self.valid.device))

    @property
    def has_padding(self) -> bool:
        return self.num_windows * self.window_size != math.prod(self.grid)

    @property
    def is_regular(self) -> bool:
        """Windows tile the grid exactly (no padding, hence no shift offset): a permute can gather them,
        which is faster than indexing."""
        return not self.has_padding

    def to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, N, D) in grid order -> (B, H, num_windows * window_size, D) window by window."""
        if not self.is_regular:
            return x.index_select(2, self.gather_index)
        dims = len(self.grid)
        split = [d for g, w in zip(self.grid, self.window) for d in (g // w, w)]
        order = [0, 1] + [2 + 2 * i for i in range(dims)] + [3 + 2 * i for i in range(dims)] + [2 + 2 * dims]
        return x.reshape(*x.shape[:2], *split, x.shape[-1]).permute(order).reshape(x.shape)

    def from_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_windows`: window-ordered slots back to grid order, padding dropped."""
        if not self.is_regular:
            return x.index_select(2, self.token_to_slot)
        dims = len(self.grid)
        blocks = [g // w for g, w in zip(self.grid, self.window)]
        order = [0, 1] + [d for i in range(dims) for d in (2 + i, 2 + dims + i)] + [2 + 2 * dims]
        return x.reshape(*x.shape[:2], *blocks, *self.window, x.shape[-1]).permute(order).reshape(x.shape)


def build_partition(grid: tuple[int, ...], window: tuple[int, ...], shift: bool,
                    device: torch.device) -> WindowPartition:
    """The partition of `grid` into `window`s, built on `device` with static-shape ops only (traceable)."""
    offsets = shift_offsets(grid, window) if shift else (0,) * len(grid)
    lead = tuple((w - s) % w for w, s in zip(window, offsets))
    padded = tuple(math.ceil((g + p) / w) * w for g, p, w in zip(grid, lead, window))
    n_tokens = math.prod(grid)
    # token index of every padded position (N for padding), laid out row-major over `padded`
    coords = torch.meshgrid(*[torch.arange(p, device=device) - l for p, l in zip(padded, lead)], indexing="ij")
    inside = torch.ones(padded, dtype=torch.bool, device=device)
    flat = torch.zeros(padded, dtype=torch.long, device=device)
    for c, g in zip(coords, grid):
        inside &= (c >= 0) & (c < g)
        flat = flat * g + c.clamp(0, g - 1)
    flat = torch.where(inside, flat, torch.full_like(flat, n_tokens))
    # reorder padded positions window by window: (n1, w1, n2, w2, ...) -> (n1, n2, ..., w1, w2, ...)
    split = [d for p, w in zip(padded, window) for d in (p // w, w)]
    dims = len(grid)
    order = [2 * i for i in range(dims)] + [2 * i + 1 for i in range(dims)]
    slot_to_token = flat.reshape(split).permute(order).reshape(-1)
    window_size = math.prod(window)
    num_windows = slot_to_token.numel() // window_size
    valid = (slot_to_token < n_tokens).reshape(num_windows, window_size)
    # inverse permutation without data-dependent shapes: padded slots scatter into a spare entry N
    slots = torch.arange(slot_to_token.numel(), device=device)
    token_to_slot = torch.zeros(n_tokens + 1, dtype=torch.long, device=device).scatter(0, slot_to_token, slots)[:n_tokens]
    return WindowPartition(grid, window, num_windows, window_size, slot_to_token, token_to_slot,
                           valid, token_to_slot // window_size, valid.sum(1),
                           slot_to_token.clamp(max=n_tokens - 1), shift)


_PARTITIONS: dict[tuple, WindowPartition] = {}


def window_partition(grid: tuple[int, ...], window: tuple[int, ...], shift: bool,
                     device: torch.device) -> WindowPartition:
    """The (cached) partition of `grid` into `window`s, with its index tensors on `device`."""
    grid, window, shift = tuple(int(g) for g in grid), tuple(int(w) for w in window), bool(shift)
    return cached(_PARTITIONS, (grid, window, shift, str(device)),
                  lambda: build_partition(grid, window, shift, torch.device(device)))


def keys_per_query(method: str, grid: tuple[int, ...], window: tuple[int, ...], shift: bool = False) -> int:
    """Keys each image query attends (padding included): its window, plus one proxy per window for
    "proxy"; the whole grid for "dense". A 2-D window on a 3-D grid covers one frame."""
    if method == "dense":
        return math.prod(grid)
    window = normalize_window(grid, (1, *window) if len(window) < len(grid) else window)
    partition = window_partition(grid, window, shift, torch.device("cpu"))
    return partition.window_size + (partition.num_windows if method == "proxy" else 0)
