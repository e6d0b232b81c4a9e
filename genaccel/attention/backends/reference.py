"""Pure-torch dense formulations of the sparse ops: the oracle every fast backend is tested against.

They build the full (N, N) logits with the sparsity pattern as a mask, in float32 (float64 stays
float64), so they are slow and memory-hungry by design.
"""

from __future__ import annotations

import torch

from genaccel.attention.partition import WindowPartition


def _softmax_combine(logit_blocks: list[torch.Tensor], value_blocks: list[torch.Tensor]) -> torch.Tensor:
    weights = torch.softmax(torch.cat(logit_blocks, dim=-1), dim=-1)
    return weights @ torch.cat(value_blocks, dim=-2)


def reference_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               partition: WindowPartition, *, proxies: bool, scale: float,
                               prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                               position_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Window attention (proxies=False) or proxy attention (proxies=True), densely masked.

    `position_bias` (heads, S, S) is added to the logit of every same-window pair by their slot
    positions inside the window."""
    compute_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = (t.to(compute_dtype) for t in (q, k, v))
    window_of = partition.token_window  # (N,)
    same_window = window_of[:, None] == window_of[None, :]
    local = (q @ k.transpose(-1, -2)) * scale
    if position_bias is not None:
        position = partition.token_to_slot % partition.window_size
        local = local + position_bias.to(compute_dtype)[:, position[:, None], position[None, :]]
    logits = [local.masked_fill(~same_window, float("-inf"))]
    values = [v]
    if proxies:
        num_windows = partition.num_windows
        counts = partition.counts.to(compute_dtype)
        proxy_keys = torch.zeros(*k.shape[:2], num_windows, k.shape[-1], dtype=compute_dtype, device=k.device)
        proxy_values = torch.zeros_like(proxy_keys)
        proxy_keys.index_add_(2, window_of, k)
        proxy_values.index_add_(2, window_of, v)
        proxy_keys /= counts[:, None]
        proxy_values /= counts[:, None]
        far = (q @ proxy_keys.transpose(-1, -2)) * scale + counts.log()
        own = window_of[:, None] == torch.arange(num_windows, device=q.device)[None, :]
        logits.append(far.masked_fill(own, float("-inf")))
        values.append(proxy_values)
    if prefix_kv is not None:
        prefix_k, prefix_v = (t.to(compute_dtype) for t in prefix_kv)
        logits.append((q @ prefix_k.transpose(-1, -2)) * scale)
        values.append(prefix_v)
    return _softmax_combine(logits, values)
