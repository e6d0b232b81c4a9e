"""`concat`: one public `F.scaled_dot_product_attention` over windows whose keys are [own window | proxies | prefix].

Simple and differentiable (the `auto` choice for training on CPU), but it copies the far field once
per window, and SDPA takes the additive bias (log(count), -inf) only in the input dtype, so in
bfloat16 log(count) is rounded to 8 bits before the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genaccel.attention.backends.common import key_bias, per_window_keys
from genaccel.attention.partition import WindowPartition


def concat_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, proxies: bool,
                     prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, scale: float,
                     position_bias: torch.Tensor | None = None) -> torch.Tensor:
    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    window_q = partition.to_windows(q).reshape(batch, heads * windows, size, dim)
    window_k, window_v = per_window_keys(k, v, partition, proxies, prefix_kv)
    n_keys = window_k.shape[3]
    window_k = window_k.reshape(batch, heads * windows, n_keys, dim)
    window_v = window_v.reshape(batch, heads * windows, n_keys, dim)
    bias = key_bias(partition, proxies, 0 if prefix_kv is None else prefix_kv[0].shape[2], q.dtype)
    if position_bias is not None:
        local = F.pad(position_bias.to(q.dtype), (0, n_keys - size))[:, None]  # (H, 1, S, keys)
        bias = local if bias is None else local + bias[None, :, None, :]
        bias = bias.expand(heads, windows, size, n_keys).reshape(1, heads * windows, size, n_keys)
    elif bias is not None:
        bias = bias[None, :, None, :].expand(heads, windows, 1, n_keys).reshape(1, heads * windows, 1, n_keys)
        if not proxies:  # padding only: a boolean mask keeps more kernels eligible
            bias = bias == 0
    out = F.scaled_dot_product_attention(window_q, window_k, window_v, attn_mask=bias, scale=scale)
    # CUDA's memory-efficient kernel returns a non-contiguous layout: reshape, never view
    return partition.from_windows(out.reshape(batch, heads, windows * size, dim))
