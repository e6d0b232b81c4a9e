"""`triton`: windowed / proxy attention as one fused Triton kernel, for inference.

Each program owns BLOCK_M query slots of one window of one (batch, head). It gathers its queries
through the partition's slot -> token index and runs one online softmax (running max and sum in
float32, FlashAttention style) over three key streams: its window's real tokens (plus an optional
position bias), one proxy per other non-empty window (mean key / mean value, log(count) added to the
logit in float32), and the prefix (text) tokens. The normalised rows go straight back to grid order.
Nothing is copied per window: beyond q, k, v and the output, memory is the proxies (O(windows)).

On CPU tensors the kernels run under Triton's interpreter, which needs TRITON_INTERPRET=1 set before
the first `import triton`: Triton decides when it decorates a function (its own tl.sum as well as
these kernels) whether it is compiled or interpreted.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from genaccel.attention.partition import WindowPartition

MAX_HEAD_DIM = 256
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_LOG2E = math.log2(math.e)


@triton.jit
def _window_means(keys_ptr, values_ptr, slot_to_token_ptr, counts_ptr, proxy_keys_ptr, proxy_values_ptr,
                  n_tokens, window_size, num_windows, heads, head_dim,
                  stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
                  BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program per (batch * head, window): mean key and mean value over the window's real tokens,
    summed in float32, stored as rows (batch * head * num_windows, head_dim)."""
    program = tl.program_id(0).to(tl.int64)
    window = program % num_windows
    batch_head = program // num_windows
    batch, head = batch_head // heads, batch_head % heads
    keys_ptr += batch * stride_kb + head * stride_kh
    values_ptr += batch * stride_vb + head * stride_vh
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d < head_dim
    key_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    value_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, window_size, BLOCK_S):
        offs_s = start + tl.arange(0, BLOCK_S)
        tokens = tl.load(slot_to_token_ptr + window * window_size + offs_s, mask=offs_s < window_size,
                         other=n_tokens)
        tile_mask = (tokens < n_tokens)[:, None] & dim_ok[None, :]
        keys = tl.load(keys_ptr + tokens[:, None] * stride_kn + offs_d[None, :], mask=tile_mask, other=0.0)
        values = tl.load(values_ptr + tokens[:, None] * stride_vn + offs_d[None, :], mask=tile_mask, other=0.0)
        key_sum += tl.sum(keys.to(tl.float32), axis=0)
        value_sum += tl.sum(values.to(tl.float32), axis=0)
    count = tl.maximum(tl.load(counts_ptr + window).to(tl.float32), 1.0)
    row = program * head_dim + offs_d
    tl.store(proxy_keys_ptr + row, (key_sum / count).to(proxy_keys_ptr.dtype.element_ty), mask=dim_ok)
    tl.store(proxy_values_ptr + row, (value_sum / count).to(proxy_values_ptr.dtype.element_ty), mask=dim_ok)


@triton.jit
def _attend(queries, keys, values, bias, row_max, row_sum, acc, qk_scale,
            DOT_PRECISION: tl.constexpr, DOTS_IN_FP32: tl.constexpr):
    """One online-softmax step over a block of keys (base-2 logits, float32 statistics)."""
    if DOTS_IN_FP32:
        keys, values = keys.to(tl.float32), values.to(tl.float32)
    logits = tl.dot(queries, tl.trans(keys), input_precision=DOT_PRECISION) * qk_scale + bias
    new_max = tl.maximum(row_max, tl.max(logits, axis=1))
    reference = tl.where(new_max == float("-inf"), 0.0, new_max)  # a row that has seen no key yet
    weights = tl.exp2(logits - reference[:, None])
    rescale = tl.exp2(row_max - reference)
    row_sum = row_sum * rescale + tl.sum(weights, axis=1)
    acc = acc * rescale[:, None] + tl.dot(weights.to(values.dtype), values, input_precision=DOT_PRECISION)
    return new_max, row_sum, acc


@triton.jit
def _sparse_attention(q_ptr, k_ptr, v_ptr, out_ptr, slot_to_token_ptr, counts_ptr,
                      proxy_keys_ptr, proxy_values_ptr, prefix_keys_ptr, prefix_values_ptr, position_bias_ptr,
                      n_tokens, window_size, num_windows, prefix_len, heads, head_dim, qk_scale,
                      stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                      stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on,
                      stride_pkb, stride_pkh, stride_pkn, stride_pvb, stride_pvh, stride_pvn,
                      PROXIES: tl.constexpr, POSITION_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr,
                      DOTS_IN_FP32: tl.constexpr, LOG2E: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program per (batch * head, window, block of BLOCK_M query slots).

    DOTS_IN_FP32 (interpreter only): Triton's interpreter has no bfloat16 arithmetic (its tl.dot
    multiplies the bit patterns), so bfloat16 operands are widened there."""
    program = tl.program_id(0)
    blocks_per_window = tl.cdiv(window_size, BLOCK_M)
    batch_head = program // (num_windows * blocks_per_window)
    window = (program // blocks_per_window) % num_windows
    block = program % blocks_per_window
    batch, head = (batch_head // heads).to(tl.int64), (batch_head % heads).to(tl.int64)
    window_slots = slot_to_token_ptr + window.to(tl.int64) * window_size

    offs_m = block * BLOCK_M + tl.arange(0, BLOCK_M)  # query positions inside the window
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d < head_dim
    query_tokens = tl.load(window_slots + offs_m, mask=offs_m < window_size, other=n_tokens)
    query_mask = (query_tokens < n_tokens)[:, None] & dim_ok[None, :]
    queries = tl.load(q_ptr + batch * stride_qb + head * stride_qh + query_tokens[:, None] * stride_qn
                      + offs_d[None, :], mask=query_mask, other=0.0)
    if DOTS_IN_FP32:
        queries = queries.to(tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    k_ptr += batch * stride_kb + head * stride_kh
    v_ptr += batch * stride_vb + head * stride_vh
    for start in range(0, window_size, BLOCK_N):  # (1) the window's real tokens, gathered through the slot index
        offs_key = start + offs_n
        key_tokens = tl.load(window_slots + offs_key, mask=offs_key < window_size, other=n_tokens)
        key_ok = key_tokens < n_tokens
        tile_mask = key_ok[:, None] & dim_ok[None, :]
        keys = tl.load(k_ptr + key_tokens[:, None] * stride_kn + offs_d[None, :], mask=tile_mask, other=0.0)
        values = tl.load(v_ptr + key_tokens[:, None] * stride_vn + offs_d[None, :], mask=tile_mask, other=0.0)
        bias = tl.where(key_ok, 0.0, float("-inf"))[None, :]
        if POSITION_BIAS:
            pair_mask = (offs_m < window_size)[:, None] & (offs_key < window_size)[None, :]
            table = tl.load(position_bias_ptr + head * window_size * window_size
                            + offs_m[:, None] * window_size + offs_key[None, :], mask=pair_mask, other=0.0)
            bias = bias + table.to(tl.float32) * LOG2E
        row_max, row_sum, acc = _attend(queries, keys, values, bias, row_max, row_sum, acc, qk_scale,
                                        DOT_PRECISION, DOTS_IN_FP32)

    if PROXIES:
        proxy_rows = batch_head.to(tl.int64) * num_windows
        for start in range(0, num_windows, BLOCK_N):  # (2) one proxy per other non-empty window
            offs_key = start + offs_n
            counts = tl.load(counts_ptr + offs_key, mask=offs_key < num_windows, other=0)
            key_ok = (counts > 0) & (offs_key != window)
            tile_mask = key_ok[:, None] & dim_ok[None, :]
            rows = (proxy_rows + offs_key)[:, None] * head_dim + offs_d[None, :]
            keys = tl.load(proxy_keys_ptr + rows, mask=tile_mask, other=0.0)
            values = tl.load(proxy_values_ptr + rows, mask=tile_mask, other=0.0)
            log2_count = tl.log2(tl.maximum(counts, 1).to(tl.float32))  # the proxy carries count tokens
            bias = tl.where(key_ok, log2_count, float("-inf"))[None, :]
            row_max, row_sum, acc = _attend(queries, keys, values, bias, row_max, row_sum, acc, qk_scale,
                                            DOT_PRECISION, DOTS_IN_FP32)

    prefix_keys_ptr += batch * stride_pkb + head * stride_pkh
    prefix_values_ptr += batch * stride_pvb + head * stride_pvh
    for start in range(0, prefix_len, BLOCK_N):  # (3) the prefix (text) tokens
        offs_key = start + offs_n
        key_ok = offs_key < prefix_len
        tile_mask = key_ok[:, None] & dim_ok[None, :]
        keys = tl.load(prefix_keys_ptr + offs_key[:, None] * stride_pkn + offs_d[None, :], mask=tile_mask, other=0.0)
        values = tl.load(prefix_values_ptr + offs_key[:, None] * stride_pvn + offs_d[None, :], mask=tile_mask,
                         other=0.0)
        bias = tl.where(key_ok, 0.0, float("-inf"))[None, :]
        row_max, row_sum, acc = _attend(queries, keys, values, bias, row_max, row_sum, acc, qk_scale,
                                        DOT_PRECISION, DOTS_IN_FP32)

    out = acc / tl.where(row_sum == 0.0, 1.0, row_sum)[:, None]  # only padded rows have no key: not stored
    tl.store(out_ptr + batch * stride_ob + head * stride_oh + query_tokens[:, None] * stride_on + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=query_mask)


def _interpreted() -> bool:
    """Whether the kernels run under Triton's interpreter (TRITON_INTERPRET=1 when triton was imported)."""
    kernels_interpreted = isinstance(_sparse_attention, InterpretedFunction)
    if kernels_interpreted != isinstance(tl.sum, InterpretedFunction):
        raise RuntimeError("TRITON_INTERPRET changed between `import triton` and the import of "
                           "genaccel.attention.backends.triton_kernel, so Triton's library and these kernels "
                           "disagree on whether they are interpreted. Set TRITON_INTERPRET=1 before anything "
                           "imports triton (in the environment, or at the top of conftest.py).")
    return kernels_interpreted


def _launch_config(window_size: int, head_dim: int, dtype: torch.dtype, interpreted: bool) -> dict:
    """Block sizes and launch options. On CUDA they are unmeasured: the largest FlashAttention-like
    tiles that compile for sm_90 without register spills (checked ahead of time with ptxas)."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    if interpreted:  # the CPU interpreter is slow per element: smallest blocks tl.dot accepts
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_D=block_d)
    if dtype == torch.float32:  # exact float32 dots are FMA loops: small tiles
        block_m, block_n, warps = (64, 16, 8) if head_dim <= 64 else (32, 16, 8)
    else:
        block_m, block_n, warps = (64, 32, 4) if head_dim <= 64 else (64, 32, 8) if head_dim <= 128 else (32, 16, 8)
    block_m = max(16, min(block_m, triton.next_power_of_2(window_size)))
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=warps, num_stages=2)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition,
                  prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, position_bias: torch.Tensor | None) -> None:
    tensors = [q, k, v, *(prefix_kv or ()), *([position_bias] if position_bias is not None else [])]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError("backend='triton' is for inference (no backward) and an input requires grad; "
                           "run under torch.no_grad() or use a differentiable backend ('concat', 'flex', 'reference')")
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"backend='triton' takes q, k, v of one shape (B, heads, N, D); got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    batch, heads, n_tokens, head_dim = q.shape
    if n_tokens != partition.token_to_slot.numel():
        raise ValueError(f"the partition of grid {partition.grid} has {partition.token_to_slot.numel()} tokens, "
                         f"q has {n_tokens}")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"backend='triton' supports head dims 1..{MAX_HEAD_DIM}, got {head_dim}")
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"backend='triton' takes q, k, v of one dtype among {DTYPES}; got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if prefix_kv is not None:
        for name, t in zip(("prefix keys", "prefix values"), prefix_kv):
            if t.dim() != 4 or t.shape[:2] != q.shape[:2] or t.shape[3] != head_dim or t.dtype != q.dtype:
                raise ValueError(f"{name} must be (B, heads, T, D) = ({batch}, {heads}, T, {head_dim}) of dtype "
                                 f"{q.dtype}; got {tuple(t.shape)} of {t.dtype}")
        if prefix_kv[0].shape != prefix_kv[1].shape:
            raise ValueError(f"prefix keys {tuple(prefix_kv[0].shape)} and values {tuple(prefix_kv[1].shape)} differ")
    if position_bias is not None:
        expected = (heads, partition.window_size, partition.window_size)
        if tuple(position_bias.shape) != expected or not position_bias.is_floating_point():
            raise ValueError(f"position_bias must be a float tensor of shape (heads, S, S) = {expected}; "
                             f"got {tuple(position_bias.shape)} of {position_bias.dtype}")
    devices = {t.device for t in tensors} | {partition.slot_to_token.device}
    if len(devices) != 1:
        raise ValueError(f"backend='triton' needs every tensor and the partition on one device; got {devices}")
    if q.device.type != "cuda" and not _interpreted():
        raise RuntimeError(f"backend='triton' runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1, set before "
                           f"triton is imported); tensors are on {q.device}")


def triton_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition,
                            proxies: bool, prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, scale: float,
                            position_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Window attention (proxies=False) or proxy attention (proxies=True) of q, k, v (B, heads, N, D) in
    grid order, with optional prefix (k, v) (B, heads, T, D) and position bias (heads, S, S).

    Computes `reference_sparse_attention`; returns (B, heads, N, D) in grid order, of q's dtype."""
    _check_inputs(q, k, v, partition, prefix_kv, position_bias)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    batch, heads, n_tokens, head_dim = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    windows, size = partition.num_windows, partition.window_size
    interpreted = _interpreted()
    config = _launch_config(size, head_dim, q.dtype, interpreted)
    # Triton 3.6's interpreter cannot end a loop at a scalar argument (NumPy >= 2.4); a constexpr it can
    loop_bound = tl.constexpr if interpreted else int
    slot_to_token, counts = partition.slot_to_token.contiguous(), partition.counts.contiguous()

    use_proxies = proxies and windows > 1  # a single window's only proxy is the query's own
    proxy_keys = proxy_values = q  # never read without proxies
    if use_proxies:
        proxy_keys = torch.empty(batch * heads * windows, head_dim, dtype=q.dtype, device=q.device)
        proxy_values = torch.empty_like(proxy_keys)
        _window_means[(batch * heads * windows,)](
            k, v, slot_to_token, counts, proxy_keys, proxy_values, n_tokens, loop_bound(size), windows, heads,
            head_dim, *k.stride()[:3], *v.stride()[:3], BLOCK_S=config["BLOCK_N"], BLOCK_D=config["BLOCK_D"])
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[2]
    prefix_keys, prefix_values = (q, q)  # never read when prefix_len is 0
    if prefix_len:
        prefix_keys, prefix_values = (_last_dim_contiguous(t) for t in prefix_kv)
    bias_table = q if position_bias is None else position_bias.contiguous()  # q: never read without the flag
    exact_fp32 = q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32

    grid = (batch * heads * windows * triton.cdiv(size, config["BLOCK_M"]),)
    _sparse_attention[grid](
        q, k, v, out, slot_to_token, counts, proxy_keys, proxy_values, prefix_keys, prefix_values, bias_table,
        n_tokens, loop_bound(size), loop_bound(windows), loop_bound(prefix_len), heads, head_dim,
        float(scale) * _LOG2E, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
        *prefix_keys.stride()[:3], *prefix_values.stride()[:3],
        PROXIES=use_proxies, POSITION_BIAS=position_bias is not None,
        DOT_PRECISION="ieee" if exact_fp32 else "tf32",
        DOTS_IN_FP32=interpreted and q.dtype == torch.bfloat16, LOG2E=_LOG2E, **config)
    return out
