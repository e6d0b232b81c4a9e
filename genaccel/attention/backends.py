"""Backends that run windowed (and proxy) attention fast, all computing the same function.

Every backend gathers tokens window by window and gives each window's queries one key set:
    [the window's own tokens | one proxy per other window | prefix (text) tokens]
with an additive bias: -inf on padded slots and on the window's own proxy, log(count) on the other
proxies (one proxy carries the mass of the tokens it stands for). One softmax over that set is the
exact log-sum-exp merge of the near field and the far field.

- `sdpa`: batched `F.scaled_dot_product_attention` over windows (every device; flash kernel when no
  bias is needed). The `auto` choice.
- `flex`: FlexAttention with a block mask on the window-ordered sequence (compiled on CUDA).
- `xformers`: `xformers.ops.memory_efficient_attention` over windows (needs xformers installed).
- `reference`: the dense masked oracle in `reference.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genaccel.attention.partition import WindowPartition
from genaccel.attention.reference import reference_sparse_attention

BACKENDS = ("auto", "sdpa", "flex", "xformers", "reference")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will run; raises when the requested one cannot run here (never a silent swap)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "sdpa"
    if backend == "xformers":
        try:
            import xformers.ops  # noqa: F401
        except ImportError as error:
            raise RuntimeError("backend='xformers' needs the xformers package: pip install 'genaccel[xformers]'") from error
        if device.type != "cuda":
            raise RuntimeError(f"backend='xformers' runs on CUDA only; tensors are on {device}. Use backend='sdpa'.")
    return backend


def _bias(partition: WindowPartition, proxies: bool, prefix_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """(num_windows, keys per window) additive bias, or None when every key is attended plainly."""
    if not proxies and not partition.has_padding:
        return None
    device = partition.valid.device
    parts = [torch.zeros(partition.valid.shape, dtype=torch.float64, device=device)
             .masked_fill(~partition.valid, float("-inf"))]
    if proxies:
        log_counts = partition.counts.to(torch.float64).log()
        far = log_counts[None, :].expand(partition.num_windows, -1).clone()
        far.fill_diagonal_(float("-inf"))
        parts.append(far)
    if prefix_len:
        parts.append(torch.zeros(partition.num_windows, prefix_len, dtype=torch.float64, device=device))
    return torch.cat(parts, dim=1).to(dtype)


def _window_keys(k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, proxies: bool,
                 prefix_kv: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window keys and values: (B, H, num_windows, keys per window, D)."""
    batch, heads, _, dim = k.shape
    shape = (batch, heads, partition.num_windows, partition.window_size, dim)
    window_k = k.index_select(2, partition.gather_index).view(shape)
    window_v = v.index_select(2, partition.gather_index).view(shape)
    key_parts, value_parts = [window_k], [window_v]
    if proxies:
        if partition.has_padding:
            weight = (partition.valid / partition.counts[:, None]).to(k.dtype)[..., None]  # (nW, ws, 1)
            proxy_k, proxy_v = (window_k * weight).sum(3), (window_v * weight).sum(3)
        else:
            proxy_k, proxy_v = window_k.mean(3), window_v.mean(3)  # (B, H, nW, D)
        expand = (batch, heads, partition.num_windows, partition.num_windows, dim)
        key_parts.append(proxy_k[:, :, None].expand(expand))
        value_parts.append(proxy_v[:, :, None].expand(expand))
    if prefix_kv is not None:
        prefix_k, prefix_v = prefix_kv
        expand = (batch, heads, partition.num_windows, prefix_k.shape[2], dim)
        key_parts.append(prefix_k[:, :, None].expand(expand))
        value_parts.append(prefix_v[:, :, None].expand(expand))
    if len(key_parts) == 1:
        return window_k, window_v
    return torch.cat(key_parts, dim=3), torch.cat(value_parts, dim=3)


def _sdpa(q, k, v, partition, proxies, prefix_kv, scale):
    batch, heads, n_tokens, dim = q.shape
    windows = partition.num_windows
    window_q = q.index_select(2, partition.gather_index).view(batch, heads * windows, partition.window_size, dim)
    window_k, window_v = _window_keys(k, v, partition, proxies, prefix_kv)
    n_keys = window_k.shape[3]
    window_k = window_k.reshape(batch, heads * windows, n_keys, dim)
    window_v = window_v.reshape(batch, heads * windows, n_keys, dim)
    bias = _bias(partition, proxies, 0 if prefix_kv is None else prefix_kv[0].shape[2], q.dtype)
    if bias is not None:
        bias = bias[None, :, None, :].expand(heads, windows, 1, n_keys).reshape(1, heads * windows, 1, n_keys)
        if not proxies:  # padding only: a boolean mask keeps more kernels eligible
            bias = bias == 0
    out = F.scaled_dot_product_attention(window_q, window_k, window_v, attn_mask=bias, scale=scale)
    return out.view(batch, heads, windows * partition.window_size, dim).index_select(2, partition.token_to_slot)


def _xformers(q, k, v, partition, proxies, prefix_kv, scale):
    import xformers.ops as xops

    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    window_q = q.index_select(2, partition.gather_index).view(batch, heads, windows, size, dim)
    window_k, window_v = _window_keys(k, v, partition, proxies, prefix_kv)
    n_keys = window_k.shape[3]
    # xformers layout: (batch * windows, sequence, heads, dim)
    to_x = lambda t: t.permute(0, 2, 3, 1, 4).reshape(batch * windows, t.shape[3], heads, dim)  # noqa: E731
    bias = _bias(partition, proxies, 0 if prefix_kv is None else prefix_kv[0].shape[2], q.dtype)
    if bias is not None:
        padded_keys = math.ceil(n_keys / 8) * 8  # xformers wants an aligned bias row stride
        storage = torch.zeros(batch, windows, heads, size, padded_keys, dtype=q.dtype, device=q.device)
        storage[..., :n_keys] = bias[None, :, None, None, :]
        bias = storage.view(batch * windows, heads, size, padded_keys)[..., :n_keys]
    out = xops.memory_efficient_attention(to_x(window_q), to_x(window_k), to_x(window_v), attn_bias=bias, scale=scale)
    out = out.view(batch, windows, size, heads, dim).permute(0, 3, 1, 2, 4).reshape(batch, heads, windows * size, dim)
    return out.index_select(2, partition.token_to_slot)


_COMPILED_FLEX = None
_BLOCK_MASKS: dict[tuple, object] = {}


def _flex(q, k, v, partition, proxies, prefix_kv, scale):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    global _COMPILED_FLEX
    run = flex_attention
    if q.device.type == "cuda":
        if _COMPILED_FLEX is None:
            _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
        run = _COMPILED_FLEX
    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    slots = windows * size
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[2]
    window_q = q.index_select(2, partition.gather_index)
    key_parts = [k.index_select(2, partition.gather_index)]
    value_parts = [v.index_select(2, partition.gather_index)]
    if proxies:
        window_k, window_v = (t.view(batch, heads, windows, size, dim) for t in (key_parts[0], value_parts[0]))
        weight = (partition.valid / partition.counts[:, None]).to(k.dtype)[..., None]
        key_parts.append((window_k * weight).sum(3))
        value_parts.append((window_v * weight).sum(3))
    if prefix_kv is not None:
        key_parts.append(prefix_kv[0])
        value_parts.append(prefix_kv[1])
    keys, values = torch.cat(key_parts, 2), torch.cat(value_parts, 2)
    n_proxies = windows if proxies else 0
    valid = partition.valid.reshape(-1)
    log_counts = partition.counts.to(torch.float32).log()

    def mask_mod(b, h, q_idx, kv_idx):
        slot = kv_idx.clamp(max=slots - 1)
        local = (kv_idx < slots) & (slot // size == q_idx // size) & valid[slot]
        proxy = (kv_idx >= slots) & (kv_idx < slots + n_proxies) & (kv_idx - slots != q_idx // size)
        return local | proxy | (kv_idx >= slots + n_proxies)

    def score_mod(score, b, h, q_idx, kv_idx):
        proxy_index = (kv_idx - slots).clamp(0, max(n_proxies - 1, 0))
        is_proxy = (kv_idx >= slots) & (kv_idx < slots + n_proxies)
        return score + torch.where(is_proxy, log_counts[proxy_index], 0.0)

    key = (partition.grid, partition.window, id(partition), n_proxies, prefix_len, str(q.device))
    block_mask = _BLOCK_MASKS.get(key)
    if block_mask is None:
        block_mask = create_block_mask(mask_mod, None, None, slots, keys.shape[2], device=q.device)
        _BLOCK_MASKS[key] = block_mask
    out = run(window_q, keys, values, score_mod=score_mod if proxies else None,
              block_mask=block_mask, scale=scale)
    return out.index_select(2, partition.token_to_slot)


def run_windowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, *,
                 proxies: bool, scale: float, backend: str,
                 prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Dispatch one windowed / proxy attention to the resolved backend."""
    backend = resolve_backend(backend, q.device)
    if backend == "reference":
        return reference_sparse_attention(q, k, v, partition, proxies=proxies, scale=scale,
                                          prefix_kv=prefix_kv).to(q.dtype)
    kernel = {"sdpa": _sdpa, "flex": _flex, "xformers": _xformers}[backend]
    return kernel(q, k, v, partition, proxies, prefix_kv, scale)
