"""Snake (boustrophedon) scan orders over 2-D and 3-D token grids, cached per grid size.

A snake path walks the grid along its innermost axis and reverses direction each time an outer
index advances, so consecutive tokens on the path are always grid neighbours (a reflected
mixed-radix Gray code). Tokens are numbered in raster (row-major) order of `grid`.
"""

from __future__ import annotations

import functools
import math

import torch

DEFAULT_AXIS_ORDERS = {2: ((0, 1), (1, 0)), 3: ((0, 1, 2), (0, 2, 1))}


def snake_path(grid: tuple[int, ...], axis_order: tuple[int, ...]) -> torch.Tensor:
    """Raster indices of `grid` in snake order; `axis_order` lists axes from outermost to innermost."""
    grid, axis_order = tuple(int(g) for g in grid), tuple(int(a) for a in axis_order)
    if any(g < 1 for g in grid):
        raise ValueError(f"grid sizes must be >= 1, got {grid}")
    if sorted(axis_order) != list(range(len(grid))):
        raise ValueError(f"axis_order must be a permutation of {tuple(range(len(grid)))}, got {axis_order}")
    sizes = [grid[a] for a in axis_order]
    step = torch.arange(math.prod(grid))
    coords = [torch.zeros_like(step)] * len(grid)
    inner = math.prod(sizes)
    for axis, size in zip(axis_order, sizes):
        inner //= size
        prefix = step // (inner * size)              # how many outer steps came before: parity = direction
        digit = (step // inner) % size
        coords[axis] = torch.where(prefix % 2 == 0, digit, size - 1 - digit)
    index = torch.zeros_like(step)
    for axis, size in enumerate(grid):
        index = index * size + coords[axis]
    return index


@functools.lru_cache(maxsize=128)
def scan_paths(grid: tuple[int, ...], axis_orders: tuple[tuple[int, ...], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(paths, inverses), both (2 * len(axis_orders), prod(grid)) int64 on CPU.

    For every axis order the snake path and its reverse; `inverses[k]` maps a raster index to its
    position on path k, so `y[..., inverses[k]]` puts path-ordered outputs back in raster order.
    """
    paths = []
    for order in axis_orders:
        path = snake_path(grid, order)
        paths += [path, path.flip(0)]
    paths_t = torch.stack(paths)
    return paths_t, torch.argsort(paths_t, dim=1)
