"""`flex`: FlexAttention over the window-ordered sequence [slots | proxies | prefix] with a block mask.

One softmax per query over its own window, every other window's proxy (log(count) added by the
score_mod, in float32) and the prefix. Differentiable: the `auto` choice for training on CUDA.
On CUDA the attention and the block mask are compiled (`_compile=True`: the full Q x KV mask is
never materialised); on CPU FlexAttention runs eagerly (forward only, slow: for tests).
"""

from __future__ import annotations

import torch

from genaccel.attention.backends.common import window_means
from genaccel.attention.caching import cached
from genaccel.attention.partition import WindowPartition

_COMPILED_FLEX = None
_BLOCK_MASKS: dict[tuple, object] = {}


def _flex_attention(device: torch.device):
    from torch.nn.attention.flex_attention import flex_attention

    global _COMPILED_FLEX
    if device.type != "cuda" or torch.compiler.is_compiling():  # under the user's compile it is traced as is
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


def flex_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition,
                          proxies: bool, prefix_kv: tuple[torch.Tensor, torch.Tensor] | None, scale: float,
                          position_bias: torch.Tensor | None = None) -> torch.Tensor:
    from torch.nn.attention.flex_attention import create_block_mask

    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    slots = windows * size
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[2]
    window_q = partition.to_windows(q)
    key_parts = [partition.to_windows(k)]
    value_parts = [partition.to_windows(v)]
    if proxies:
        shape = (batch, heads, windows, size, dim)
        key_parts.append(window_means(key_parts[0].view(shape), partition))
        value_parts.append(window_means(value_parts[0].view(shape), partition))
    if prefix_kv is not None:
        key_parts.append(prefix_kv[0])
        value_parts.append(prefix_kv[1])
    keys, values = torch.cat(key_parts, 2), torch.cat(value_parts, 2)
    n_proxies = windows if proxies else 0
    valid = partition.valid.reshape(-1)
    log_counts = partition.counts.to(torch.float64 if q.dtype == torch.float64 else torch.float32).log()

    def mask_mod(b, h, q_idx, kv_idx):
        slot = kv_idx.clamp(max=slots - 1)
        local = (kv_idx < slots) & (slot // size == q_idx // size) & valid[slot]
        proxy = (kv_idx >= slots) & (kv_idx < slots + n_proxies) & (kv_idx - slots != q_idx // size)
        return local | proxy | (kv_idx >= slots + n_proxies)

    def score_mod(score, b, h, q_idx, kv_idx):
        proxy_index = (kv_idx - slots).clamp(0, max(n_proxies - 1, 0))
        is_proxy = (kv_idx >= slots) & (kv_idx < slots + n_proxies)
        score = score + torch.where(is_proxy, log_counts[proxy_index], 0.0)
        if position_bias is not None:
            local_bias = position_bias[h, q_idx % size, kv_idx.clamp(max=slots - 1) % size]
            score = score + torch.where(kv_idx < slots, local_bias, 0.0)
        return score

    block_mask = cached(_BLOCK_MASKS, (partition.key, n_proxies, prefix_len), lambda: create_block_mask(
        mask_mod, None, None, slots, keys.shape[2], device=q.device,
        _compile=q.device.type == "cuda" and not torch.compiler.is_compiling()))
    run = _flex_attention(q.device)
    out = run(window_q, keys, values, score_mod=score_mod if proxies or position_bias is not None else None,
              block_mask=block_mask, scale=scale)
    return partition.from_windows(out)
