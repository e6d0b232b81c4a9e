"""Every backend against the float32 reference on CUDA, in float32, bfloat16 and float16."""

from __future__ import annotations

import math

import pytest
import torch

from genaccel.attention import proxy_attention, window_attention

CASES = [((16, 16), (8, 8)), ((13, 30), (8, 8)), ((3, 10, 12), (1, 4, 4)), ((7, 5), (3, 2))]
TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 3e-2, torch.float16: 5e-3}  # TF32 / half rounding of inputs


def inputs(grid, dtype, heads=4, dim=64, text=7, seed=0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    n = math.prod(grid)
    make = lambda length: torch.randn(2, heads, length, dim, generator=generator, device="cuda").to(dtype)  # noqa: E731
    return make(n), make(n), make(n), (make(text), make(text))


@pytest.mark.parametrize("backend", ["triton", "split", "concat", "flex", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("grid,window", CASES)
@pytest.mark.parametrize("shift", [False, True])
def test_backend_matches_reference_on_cuda(backend, dtype, grid, window, shift):
    q, k, v, prefix = inputs(grid, dtype)
    with torch.no_grad():
        for op in (window_attention, proxy_attention):
            for text in (None, prefix):
                expected = op(q, k, v, grid, window, shift, backend="reference", prefix_kv=text).float()
                got = op(q, k, v, grid, window, shift, backend=backend, prefix_kv=text)
                assert got.dtype == dtype and got.shape == q.shape
                torch.testing.assert_close(got.float(), expected, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("backend", ["triton", "split", "concat", "flex"])
def test_position_bias_on_cuda(backend):
    grid, window = (12, 12), (4, 4)
    q, k, v, _ = inputs(grid, torch.bfloat16)
    bias = torch.randn(4, 16, 16, device="cuda")
    with torch.no_grad():
        expected = window_attention(q, k, v, grid, window, True, backend="reference", position_bias=bias).float()
        got = window_attention(q, k, v, grid, window, True, backend=backend, position_bias=bias)
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=3e-2)


def test_flex_gradients_match_reference_on_cuda():
    grid, window = (12, 10), (4, 4)
    q, k, v, _ = inputs(grid, torch.float32)
    weights = torch.randn_like(q)
    grads = []
    for backend in ("reference", "auto"):  # auto picks flex for training on CUDA
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = proxy_attention(*leaves, grid, window, backend=backend)
        grads.append(torch.autograd.grad((out * weights).sum(), leaves))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)


def test_triton_memory_is_linear_in_tokens():
    """Beyond q, k, v and the output, the fused kernel allocates O(N) (proxies, indices), not O(N x windows)."""
    grid, window = (13, 30, 45), (1, 8, 8)  # CogVideoX-5B's token grid
    q, k, v, prefix = inputs(grid, torch.bfloat16, heads=48, dim=64, text=226)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        out = proxy_attention(q, k, v, grid, window, backend="triton", prefix_kv=prefix)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before - out.numel() * out.element_size()
    assert extra < 0.5 * q.numel() * q.element_size(), f"{extra / 2**20:.0f} MiB beyond the output"
