"""The fused Triton kernel against the dense reference; on CPU it runs under Triton's interpreter.

Shapes are tiny: the interpreter executes every program in Python. The interpreter needs
TRITON_INTERPRET=1 before triton is first imported: tests/conftest.py sets it on machines without CUDA.
"""

import math

import pytest
import torch
import torch.nn.functional as F

triton = pytest.importorskip("triton")

from genaccel.attention import proxy_attention, window_attention  # noqa: E402
from genaccel.attention.backends import triton_kernel  # noqa: E402
from genaccel.attention.backends.triton_kernel import triton_sparse_attention  # noqa: E402
from genaccel.attention.partition import window_partition  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_kernel._interpreted():
    pytest.skip("triton was imported without TRITON_INTERPRET=1, so its kernels cannot run on CPU tensors: "
                "run pytest with TRITON_INTERPRET=1", allow_module_level=True)

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=1e-3, atol=2e-3),
             torch.bfloat16: dict(rtol=1e-2, atol=2e-2)}
CASES = [((7, 5), (3, 2)), ((3, 5, 4), (2, 2, 3))]  # padded image grid, padded video grid


def tensors(grid, dtype=torch.float32, batch=1, heads=2, dim=12, text=0, seed=0):
    """q, k, v (batch, heads, N, dim) and a prefix (k, v) of `text` tokens (None when 0)."""
    generator = torch.Generator().manual_seed(seed)
    make = lambda length: torch.randn(batch, heads, length, dim, generator=generator).to(DEVICE, dtype)  # noqa: E731
    q, k, v = (make(math.prod(grid)) for _ in range(3))
    return q, k, v, ((make(text), make(text)) if text else None)


def check(got, expected, dtype):
    assert got.dtype == dtype and got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected.float(), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("text", [0, 5])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("grid,window", CASES)
@pytest.mark.parametrize("op", [window_attention, proxy_attention])
def test_matches_reference(op, grid, window, shift, text, dtype):
    q, k, v, prefix = tensors(grid, dtype, text=text)
    with torch.no_grad():
        expected = op(q, k, v, grid, window, shift, backend="reference", prefix_kv=prefix)
        got = op(q, k, v, grid, window, shift, backend="triton", prefix_kv=prefix)
    check(got, expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("grid,window", CASES)
def test_position_bias_matches_reference(grid, window, dtype):
    q, k, v, prefix = tensors(grid, dtype, text=4)
    size = math.prod(window)
    bias = torch.randn(2, size, size, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
    for text in (None, prefix):
        expected = window_attention(q, k, v, grid, window, True, backend="reference", prefix_kv=text,
                                    position_bias=bias)
        got = window_attention(q, k, v, grid, window, True, backend="triton", prefix_kv=text, position_bias=bias)
        check(got, expected, dtype)


@pytest.mark.parametrize("dim", [12, 72])
def test_head_dim_not_a_power_of_two(dim):
    grid, window = (5, 6), (2, 4)
    q, k, v, prefix = tensors(grid, heads=1, dim=dim, text=4)
    for op in (window_attention, proxy_attention):
        expected = op(q, k, v, grid, window, True, backend="reference", prefix_kv=prefix)
        check(op(q, k, v, grid, window, True, backend="triton", prefix_kv=prefix), expected, torch.float32)


def test_float16_matches_reference():
    grid, window = (7, 5), (3, 2)
    q, k, v, prefix = tensors(grid, torch.float16, text=5)
    expected = proxy_attention(q, k, v, grid, window, True, backend="reference", prefix_kv=prefix)
    check(proxy_attention(q, k, v, grid, window, True, backend="triton", prefix_kv=prefix), expected, torch.float16)


@pytest.mark.parametrize("grid", [(7, 5), (3, 5, 4)])
def test_one_window_covering_the_grid_is_dense_attention(grid):
    q, k, v, prefix = tensors(grid, text=4)
    dense = F.scaled_dot_product_attention(q, k, v)
    for op in (window_attention, proxy_attention):  # one window: its only proxy is the query's own
        check(op(q, k, v, grid, grid, backend="triton"), dense, torch.float32)
    with_text = F.scaled_dot_product_attention(q, torch.cat([k, prefix[0]], 2), torch.cat([v, prefix[1]], 2))
    check(proxy_attention(q, k, v, grid, grid, True, backend="triton", prefix_kv=prefix), with_text, torch.float32)


def test_proxies_of_single_tokens_are_dense_attention():
    grid = (4, 5)
    q, k, v, _ = tensors(grid)
    dense = F.scaled_dot_product_attention(q, k, v)
    check(proxy_attention(q, k, v, grid, (1, 1), backend="triton"), dense, torch.float32)


def test_strided_inputs_and_empty_prefix():
    """(B, N, H, D) projections viewed as (B, H, N, D), a last dim that is not contiguous, T = 0."""
    grid, window = (7, 5), (3, 2)
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 35, 3, 12, generator=generator).to(DEVICE).transpose(1, 2) for _ in range(3))
    v = v.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, last dim strided
    assert v.stride(-1) != 1
    empty = (q[:, :, :0], q[:, :, :0])
    expected = proxy_attention(q, k, v, grid, window, True, backend="reference")
    check(proxy_attention(q, k, v, grid, window, True, backend="triton"), expected, torch.float32)
    check(proxy_attention(q, k, v, grid, window, True, backend="triton", prefix_kv=empty), expected, torch.float32)


def test_refuses_inputs_that_require_grad():
    grid, window = (4, 4), (2, 2)
    q, k, v, _ = tensors(grid)
    q.requires_grad_()
    with pytest.raises(RuntimeError, match="requires grad"):  # through the dispatcher
        proxy_attention(q, k, v, grid, window, backend="triton")
    partition = window_partition(grid, window, False, q.device)
    with pytest.raises(RuntimeError, match="requires grad"):  # called directly
        triton_sparse_attention(q, k, v, partition, True, None, 0.5)
    with torch.no_grad():
        triton_sparse_attention(q, k, v, partition, True, None, 0.5)  # inference is fine


def test_rejects_unsupported_shapes():
    grid, window = (2, 2), (2, 2)
    partition = window_partition(grid, window, False, torch.device(DEVICE))
    big = torch.zeros(1, 1, 4, 264, device=DEVICE)
    with pytest.raises(ValueError, match=r"head dims 1\.\.256"):
        triton_sparse_attention(big, big, big, partition, False, None, 1.0)
    q = torch.zeros(1, 1, 4, 8, device=DEVICE)
    with pytest.raises(ValueError, match="one dtype"):
        triton_sparse_attention(q, q, q.double(), partition, False, None, 1.0)
    with pytest.raises(ValueError, match=r"position_bias must be .* \(1, 4, 4\)"):
        triton_sparse_attention(q, q, q, partition, False, None, 1.0, torch.zeros(1, 3, 3, device=DEVICE))


def test_explains_when_the_interpreter_cannot_run(monkeypatch):
    q = torch.zeros(1, 1, 4, 8)
    partition = window_partition((2, 2), (2, 2), False, q.device)
    monkeypatch.setattr(triton_kernel, "_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA tensors .* before triton is imported"):
        triton_sparse_attention(q, q, q, partition, False, None, 1.0)
    monkeypatch.undo()
    monkeypatch.setattr(triton.language, "sum", object())  # as if TRITON_INTERPRET had changed after `import triton`
    with pytest.raises(RuntimeError, match="before anything imports triton"):
        triton_kernel._interpreted()
