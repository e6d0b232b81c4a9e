"""Exactness of the sparse ops: degenerate cases equal dense attention, backends equal the reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from genaccel.attention import joint_attention, proxy_attention, window_attention

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

GRIDS = [(8, 8), (7, 5), (3, 5, 4), (1, 9)]
BACKENDS = ["split", "concat", "reference", "flex"]


def qkv(grid, batch=2, heads=3, dim=8, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = math.prod(grid)
    return [torch.randn(batch, heads, n, dim, generator=generator, dtype=dtype) for _ in range(3)]


def dense(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_window_covering_grid_equals_dense(grid, backend):
    q, k, v = qkv(grid)
    torch.testing.assert_close(window_attention(q, k, v, grid, grid, backend=backend), dense(q, k, v))
    # a window larger than the grid is clamped to it
    big = tuple(g + 3 for g in grid)
    torch.testing.assert_close(window_attention(q, k, v, grid, big, shift=True, backend=backend), dense(q, k, v))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_proxy_degenerate_windows_equal_dense(grid, backend):
    q, k, v = qkv(grid)
    ones = (1,) * len(grid)
    torch.testing.assert_close(proxy_attention(q, k, v, grid, ones, backend=backend), dense(q, k, v))
    torch.testing.assert_close(proxy_attention(q, k, v, grid, grid, backend=backend), dense(q, k, v))


@pytest.mark.parametrize("grid,window", [((8, 8), (4, 4)), ((7, 5), (3, 2)), ((3, 5, 4), (2, 2, 3)), ((1, 9), (1, 4))])
@pytest.mark.parametrize("backend", ["split", "concat", "flex"])
@pytest.mark.parametrize("shift", [False, True])
def test_backends_match_reference(grid, window, backend, shift):
    q, k, v = qkv(grid)
    text_k, text_v = qkv((4,))[:2]
    for op in (window_attention, proxy_attention):
        for prefix in (None, (text_k, text_v)):
            expected = op(q, k, v, grid, window, shift, backend="reference", prefix_kv=prefix)
            got = op(q, k, v, grid, window, shift, backend=backend, prefix_kv=prefix)
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_proxy_reference_matches_per_query_formula():
    """Own window exact; other windows as (mean key, mean value) with log(count) on the logit."""
    grid, window = (5, 3), (2, 2)
    q, k, v = qkv(grid, batch=1, heads=1, dim=4)
    out = proxy_attention(q, k, v, grid, window, backend="reference")[0, 0]
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(3), indexing="ij")
    window_id = ((rows // 2) * 2 + cols // 2).reshape(-1)  # 3 x 2 windows, the last row and column partial
    scale = 1 / math.sqrt(4)
    for i in range(15):
        logits, values = [], []
        for j in range(15):
            if window_id[j] == window_id[i]:
                logits.append(q[0, 0, i] @ k[0, 0, j] * scale)
                values.append(v[0, 0, j])
        for w in window_id.unique():
            if w == window_id[i]:
                continue
            members = window_id == w
            logits.append(q[0, 0, i] @ k[0, 0, members].mean(0) * scale + math.log(members.sum()))
            values.append(v[0, 0, members].mean(0))
        weights = torch.softmax(torch.stack(logits), 0)
        torch.testing.assert_close(out[i], (weights[:, None] * torch.stack(values)).sum(0))


def swin_brute_force(q, k, v, grid, window):
    """Swin's own recipe: cyclic roll by -window//2, partition, mask pairs from different regions."""
    h, w = grid
    wh, ww = window
    sh, sw = wh // 2, ww // 2
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rolled_r, rolled_c = (rows - sh) % h, (cols - sw) % w  # position of each token after torch.roll(-s)
    window_id = (rolled_r // wh) * (w // ww) + rolled_c // ww
    region_r = torch.where(rolled_r < h - wh, 0, torch.where(rolled_r < h - sh, 1, 2))
    region_c = torch.where(rolled_c < w - ww, 0, torch.where(rolled_c < w - sw, 1, 2))
    region = (window_id * 9 + region_r * 3 + region_c).reshape(-1)
    mask = region[:, None] == region[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("grid,window", [((8, 8), (4, 4)), ((12, 6), (4, 2)), ((9, 6), (3, 3))])
@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_window_matches_swin_brute_force(grid, window, backend):
    q, k, v = qkv(grid)
    torch.testing.assert_close(window_attention(q, k, v, grid, window, shift=True, backend=backend),
                               swin_brute_force(q, k, v, grid, window))


@pytest.mark.parametrize("shift", [False, True])
def test_no_attention_across_window_borders_on_odd_grid(shift):
    """Changing every token outside a query's window leaves that query's output unchanged."""
    grid, window = (7, 5), (3, 3)
    q, k, v = qkv(grid)
    out = window_attention(q, k, v, grid, window, shift=shift)
    # token (0, 0) is in the first window in both partitions: rows 0..2 (0..0 shifted), cols 0..2 (0..0 shifted)
    keep = torch.zeros(grid, dtype=torch.bool)
    keep[: (1 if shift else 3), : (1 if shift else 3)] = True
    keep = keep.reshape(-1)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, ~keep] = torch.randn_like(k2[:, :, ~keep])
    v2[:, :, ~keep] = torch.randn_like(v2[:, :, ~keep])
    out2 = window_attention(q, k2, v2, grid, window, shift=shift)
    torch.testing.assert_close(out2[:, :, 0], out[:, :, 0])
    assert not torch.allclose(out2[:, :, ~keep], out[:, :, ~keep])


@pytest.mark.parametrize("op", [window_attention, proxy_attention])
def test_batch_elements_are_independent(op):
    grid = (6, 6)
    q, k, v = qkv(grid, batch=2)
    joint = op(q, k, v, grid, (4, 4))
    for b in range(2):
        alone = op(q[b:b + 1], k[b:b + 1], v[b:b + 1], grid, (4, 4))
        torch.testing.assert_close(joint[b:b + 1], alone)


@pytest.mark.parametrize("op", [window_attention, proxy_attention])
def test_bfloat16_inputs(op):
    grid = (8, 8)
    q, k, v = qkv(grid, dtype=torch.float32)
    expected = op(q, k, v, grid, (4, 4))
    got = op(q.bfloat16(), k.bfloat16(), v.bfloat16(), grid, (4, 4))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("text_first", [True, False])
@pytest.mark.parametrize("method", ["window", "proxy"])
def test_joint_attention_text_rows_dense_and_degenerate_equal_dense(text_first, method):
    grid, text_len = (6, 5), 4
    q, k, v = qkv((text_len + 30,))
    full = dense(q, k, v)
    window = grid if method == "window" else (1, 1)
    out = joint_attention(q, k, v, grid, window, method=method, text_len=text_len, text_first=text_first)
    torch.testing.assert_close(out, full)
    sparse = joint_attention(q, k, v, grid, (2, 2), method=method, text_len=text_len, text_first=text_first)
    text = slice(0, text_len) if text_first else slice(30, None)
    torch.testing.assert_close(sparse[:, :, text], full[:, :, text])


def test_bad_inputs_raise_clear_errors():
    q, k, v = qkv((4, 4))
    with pytest.raises(ValueError, match="positive integers"):
        window_attention(q, k, v, (4, 4), (0, 2))
    with pytest.raises(ValueError, match="positive integers"):
        proxy_attention(q, k, v, (4, 4), (-1, 2))
    with pytest.raises(ValueError, match="does not match"):
        window_attention(q, k, v, (4, 5), (2, 2))
    with pytest.raises(ValueError, match="dims"):
        window_attention(q, k, v, (4, 4), (2, 2, 2))
    with pytest.raises(ValueError, match="unknown attention backend"):
        window_attention(q, k, v, (4, 4), (2, 2), backend="magic")
    with pytest.raises(ValueError, match=r"\(B, heads, N, D\)"):
        window_attention(q[0], k[0], v[0], (4, 4), (2, 2))


def test_xformers_backend_unavailable_is_an_error_not_a_fallback():
    q, k, v = qkv((4, 4), dtype=torch.float32)
    try:
        import xformers  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="xformers"):
            window_attention(q, k, v, (4, 4), (2, 2), backend="xformers")
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            window_attention(q, k, v, (4, 4), (2, 2), backend="xformers")


@pytest.mark.parametrize("grid,window,shift", [((8, 8), (4, 4), False), ((7, 5), (3, 2), True), ((3, 5, 4), (2, 2, 3), False)])
@pytest.mark.parametrize("backend", ["split", "concat", "flex"])
@pytest.mark.parametrize("with_text", [False, True])
def test_position_bias_matches_reference(grid, window, shift, backend, with_text):
    q, k, v = qkv(grid)
    size = math.prod(window)
    bias = torch.randn(q.shape[1], size, size, dtype=q.dtype, generator=torch.Generator().manual_seed(1))
    prefix = tuple(qkv((4,))[:2]) if with_text else None
    expected = window_attention(q, k, v, grid, window, shift, backend="reference", position_bias=bias, prefix_kv=prefix)
    got = window_attention(q, k, v, grid, window, shift, backend=backend, position_bias=bias, prefix_kv=prefix)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(expected, window_attention(q, k, v, grid, window, shift, prefix_kv=prefix))


def test_position_bias_by_slot_equals_dense_additive_mask():
    """One window covering a 3 x 4 grid: the bias table is a plain additive (N, N) mask."""
    grid = (3, 4)
    q, k, v = qkv(grid)
    bias = torch.randn(q.shape[1], 12, 12, dtype=q.dtype)
    torch.testing.assert_close(window_attention(q, k, v, grid, grid, position_bias=bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    with pytest.raises(ValueError, match="position_bias must have shape"):
        window_attention(q, k, v, grid, (2, 2), position_bias=bias)


def test_bench_attention_cli_rejects_bad_options_in_one_line(capsys):
    from genaccel.cli import main

    assert main(["bench-attention", "--runs", "0", "--no-video"]) == 2
    assert "--runs must be >= 1" in capsys.readouterr().err
