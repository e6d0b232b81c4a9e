"""Pieces the windowed-attention backends share: the additive biases and the window means (proxies).

Biases are built in float64 and cast once to the dtype a kernel needs; log(count) of a proxy and
the -inf of padded slots and of a query's own-window proxy are what they hold.
"""

from __future__ import annotations

import torch

from genaccel.attention.caching import cached
from genaccel.attention.partition import WindowPartition


def key_bias(partition: WindowPartition, proxies: bool, prefix_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """(num_windows, keys per window) bias over [own window | proxies | prefix], or None when no key needs one.

    -inf on padded slots and on the window's own proxy, log(count) on the other proxies, 0 elsewhere.
    """
    if not proxies and not partition.has_padding:
        return None
    device = partition.valid.device
    parts = [torch.zeros(partition.valid.shape, dtype=torch.float64, device=device)
             .masked_fill(~partition.valid, float("-inf"))]
    if proxies:
        far = partition.counts.to(torch.float64).log()[None, :].expand(partition.num_windows, -1).clone()
        far.fill_diagonal_(float("-inf"))
        parts.append(far)
    if prefix_len:
        parts.append(torch.zeros(partition.num_windows, prefix_len, dtype=torch.float64, device=device))
    return torch.cat(parts, dim=1).to(dtype)


_FAR_BIASES: dict[tuple, torch.Tensor] = {}


def far_field_bias(partition: WindowPartition, proxies: bool, prefix_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """(1, 1, slots, proxies + prefix) bias in window order: log(count) on the proxies, -inf on a slot's own."""
    if not proxies:
        return None
    def build() -> torch.Tensor:
        by_window = key_bias(partition, True, prefix_len, torch.float64)[:, partition.window_size:]
        return by_window.repeat_interleave(partition.window_size, dim=0).to(dtype)[None, None]

    return cached(_FAR_BIASES, (partition.key, prefix_len, dtype), build)


def window_means(window_x: torch.Tensor, partition: WindowPartition) -> torch.Tensor:
    """Mean over each window's real tokens: (B, H, nW, ws, D) -> (B, H, nW, D), accumulated in float32."""
    accumulate = torch.promote_types(window_x.dtype, torch.float32)
    if not partition.has_padding:
        return window_x.mean(3, dtype=accumulate).to(window_x.dtype)
    weights = partition.valid.to(accumulate) / partition.counts[:, None].to(accumulate)
    return torch.einsum("bhnsd,ns->bhnd", window_x.to(accumulate), weights).to(window_x.dtype)


def proxies_of(x: torch.Tensor, partition: WindowPartition) -> torch.Tensor:
    """Proxy (window mean) of every window of x (B, H, N, D) in grid order: (B, H, nW, D)."""
    batch, heads, _, dim = x.shape
    windows = partition.to_windows(x).reshape(batch, heads, partition.num_windows, partition.window_size, dim)
    return window_means(windows, partition)


def per_window_keys(k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, proxies: bool,
                    prefix_kv: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values each window attends, copied per window: (B, H, num_windows, keys per window, D).

    [own window | every proxy | prefix]: the far field is repeated once per window (what `concat`
    and `xformers` need; `split`, `flex` and `triton` avoid this copy).
    """
    batch, heads, _, dim = k.shape
    shape = (batch, heads, partition.num_windows, partition.window_size, dim)
    window_k = partition.to_windows(k).reshape(shape)
    window_v = partition.to_windows(v).reshape(shape)
    key_parts, value_parts = [window_k], [window_v]
    if proxies:
        expand = (batch, heads, partition.num_windows, partition.num_windows, dim)
        key_parts.append(window_means(window_k, partition)[:, :, None].expand(expand))
        value_parts.append(window_means(window_v, partition)[:, :, None].expand(expand))
    if prefix_kv is not None:
        prefix_k, prefix_v = prefix_kv
        expand = (batch, heads, partition.num_windows, prefix_k.shape[2], dim)
        key_parts.append(prefix_k[:, :, None].expand(expand))
        value_parts.append(prefix_v[:, :, None].expand(expand))
    if len(key_parts) == 1:
        return window_k, window_v
    return torch.cat(key_parts, dim=3), torch.cat(value_parts, dim=3)
