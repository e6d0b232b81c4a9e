"""`split`: the near field (windows batched) and the far field (proxies, prefix) as two fused attention
calls, merged exactly through their log-sum-exps. Nothing of the far field is copied per window.

The fused kernels that return their log-sum-exp are aten's CPU flash kernel and CUDA's
memory-efficient kernel. Neither propagates a gradient through the log-sum-exp, so `split` is for
inference: with autograd on, it raises (use `concat`, or `flex` on CUDA). The far field runs in
float32 for half-precision inputs, so log(count) is never rounded to 8 bits.
"""

from __future__ import annotations

import torch

from genaccel.attention.backends.common import far_field_bias, key_bias, window_means
from genaccel.attention.backends.concat import concat_attention
from genaccel.attention.partition import WindowPartition

_MEM_EFFICIENT_ALIGNMENT = 8  # CUDA's memory-efficient kernel wants bias rows aligned to 8 elements


def _aligned_bias(bias: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """`bias` broadcast to (B, H, M, N) with row strides the memory-efficient kernel accepts
    (as `F.scaled_dot_product_attention` prepares it)."""
    if any(stride % _MEM_EFFICIENT_ALIGNMENT for stride in bias.stride()[:-1]):
        keys = bias.shape[-1]
        pad = _MEM_EFFICIENT_ALIGNMENT - keys % _MEM_EFFICIENT_ALIGNMENT
        bias = torch.nn.functional.pad(bias, (0, pad))[..., :keys]
    return bias.expand(shape)


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                       bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention over (B, H, M, D): (output, log-sum-exp of the biased scaled logits, (B, H, M) fp32)."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias, scale=scale)[:2]
        return out, lse.reshape(q.shape[:-1])
    if q.device.type == "cuda":
        if bias is not None:
            bias = _aligned_bias(bias.to(q.dtype), (q.shape[0], q.shape[1], q.shape[2], k.shape[2]))
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, scale=scale)[:2]
        return out, lse[..., :q.shape[2]]  # the kernel pads the log-sum-exp rows to a multiple of 32
    raise RuntimeError(f"backend='split' runs on CPU and CUDA tensors, got {q.device}")


def split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, proxies: bool,
                    prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, scale: float,
                    position_bias: torch.Tensor | None = None) -> torch.Tensor:
    if not proxies and prefix_kv is None:
        return concat_attention(q, k, v, partition, False, None, scale, position_bias)  # near field only
    if proxies and partition.num_windows == 1 and prefix_kv is None:
        return concat_attention(q, k, v, partition, False, None, scale)  # the only proxy is the query's own window
    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    slots = windows * size
    window_q, window_k, window_v = (partition.to_windows(t) for t in (q, k, v))  # (B, H, slots, D)
    mask = None
    if partition.has_padding or position_bias is not None:
        mask = torch.zeros(heads, windows, 1, size, dtype=q.dtype, device=q.device)
        if partition.has_padding:
            mask = mask + key_bias(partition, False, 0, q.dtype)[None, :, None, :]
        if position_bias is not None:
            mask = mask + position_bias.to(q.dtype)[:, None]
        rows = mask.shape[2]
        mask = mask.expand(heads, windows, rows, size).reshape(1, heads * windows, rows, size)
    as_windows = lambda t: t.reshape(batch, heads * windows, size, dim)  # noqa: E731
    near, near_lse = attention_with_lse(as_windows(window_q), as_windows(window_k), as_windows(window_v), scale, mask)
    far_k, far_v = [], []
    if proxies:
        far_k.append(window_means(window_k.reshape(batch, heads, windows, size, dim), partition))
        far_v.append(window_means(window_v.reshape(batch, heads, windows, size, dim), partition))
    if prefix_kv is not None:
        far_k.append(prefix_kv[0])
        far_v.append(prefix_kv[1])
    far_k, far_v = (parts[0] if len(parts) == 1 else torch.cat(parts, 2) for parts in (far_k, far_v))
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[2]
    far_dtype = torch.promote_types(q.dtype, torch.float32)  # the far field is small: keep log(count) exact
    far, far_lse = attention_with_lse(window_q.to(far_dtype), far_k.to(far_dtype), far_v.to(far_dtype), scale,
                                      far_field_bias(partition, proxies, prefix_len, far_dtype))
    # softmax over both fields = near * w + far * (1 - w) with w = sigmoid(lse_near - lse_far)
    near_share = torch.sigmoid(near_lse.reshape(batch, heads, slots) - far_lse.reshape(batch, heads, slots))
    merged = torch.lerp(far.reshape(batch, heads, slots, dim).to(far_dtype),
                        near.reshape(batch, heads, slots, dim).to(far_dtype), near_share[..., None].to(far_dtype))
    return partition.from_windows(merged.to(q.dtype))
