"""`xformers`: `xformers.ops.memory_efficient_attention` over windows (optional; needs xformers and CUDA).

Like `concat` it copies the far field once per window; its bias is in the input dtype.
"""

from __future__ import annotations

import math

import torch

from genaccel.attention.backends.common import key_bias, per_window_keys
from genaccel.attention.partition import WindowPartition


def xformers_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, proxies: bool,
                       prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, scale: float,
                       position_bias: torch.Tensor | None = None) -> torch.Tensor:
    import xformers.ops as xops

    if position_bias is not None:
        raise ValueError("backend='xformers' does not take a position_bias; use 'triton', 'split', 'concat' or 'flex'")
    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    window_q = partition.to_windows(q).reshape(batch, heads, windows, size, dim)
    window_k, window_v = per_window_keys(k, v, partition, proxies, prefix_kv)
    n_keys = window_k.shape[3]
    # xformers layout: (batch * windows, sequence, heads, dim)
    to_x = lambda t: t.permute(0, 2, 3, 1, 4).reshape(batch * windows, t.shape[3], heads, dim)  # noqa: E731
    bias = key_bias(partition, proxies, 0 if prefix_kv is None else prefix_kv[0].shape[2], q.dtype)
    if bias is not None:
        padded_keys = math.ceil(n_keys / 8) * 8  # xformers wants an aligned bias row stride
        storage = torch.zeros(batch, windows, heads, size, padded_keys, dtype=q.dtype, device=q.device)
        storage[..., :n_keys] = bias[None, :, None, None, :]
        bias = storage.view(batch * windows, heads, size, padded_keys)[..., :n_keys]
    out = xops.memory_efficient_attention(to_x(window_q), to_x(window_k), to_x(window_v), attn_bias=bias, scale=scale)
    out = out.reshape(batch, windows, size, heads, dim).permute(0, 3, 1, 2, 4).reshape(batch, heads, windows * size, dim)
    return partition.from_windows(out)
