"""The relative position bias table through `window_attention(position_bias=)` equals a dense masked
oracle (bias looked up from grid coordinates), shifted and padded windows too."""

import math

import pytest
import torch

from genaccel.attention import window_attention
from genaccel.attention.partition import normalize_window, window_partition
from genaccel.blocks.relative_position_bias import RelativePositionBias

CASES = [((8, 8), 4, False), ((8, 8), 4, True), ((5, 7), 3, False), ((5, 7), 3, True), ((2, 4, 6), (2, 2, 3), True)]


def _qkv(grid, heads=2, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, heads, math.prod(grid), dim, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("grid, window, shift", CASES)
def test_with_bias_equals_dense_masked_oracle(grid, window, shift):
    q, k, v = _qkv(grid)
    window = normalize_window(grid, window)
    rpb = RelativePositionBias(window, 2).double()
    out = window_attention(q, k, v, grid, window, shift, position_bias=rpb(window))
    # oracle: full (N, N) logits, + table[grid offset], masked to pairs sharing a window
    coords = torch.stack(torch.unravel_index(torch.arange(math.prod(grid)), grid), -1)
    offset = coords[:, None, :] - coords[None, :, :]
    index = torch.zeros(offset.shape[:2], dtype=torch.long)
    for axis, w in enumerate(window):
        index = index * (2 * w - 1) + (offset[..., axis] + w - 1).clamp(0, 2 * w - 2)
    bias = rpb.table[index].permute(2, 0, 1)
    windows = window_partition(grid, window, shift, q.device).token_window
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias
    logits = logits.masked_fill(windows[:, None] != windows[None, :], float("-inf"))
    assert torch.allclose(out, torch.softmax(logits, -1) @ v, rtol=0, atol=1e-12)


def test_bias_for_a_clamped_window_and_errors():
    rpb = RelativePositionBias((8, 8), 3)
    small = rpb((3, 4))
    assert small.shape == (3, 12, 12)
    # the zero offset sits in the table's centre row whatever the effective window
    assert torch.equal(small[:, 0, 0], rpb.table[(8 - 1) * 15 + 8 - 1])
    with pytest.raises(ValueError, match="exceeds the bias table's window"):
        rpb((9, 8))
    q, k, v = _qkv((4, 4), heads=3)
    with pytest.raises(ValueError, match=r"position_bias must have shape \(heads, S, S\) = \(3, 4, 4\)"):
        window_attention(q, k, v, (4, 4), 2, False, position_bias=torch.zeros(3, 5, 5))
