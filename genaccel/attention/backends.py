"""Backends that run windowed (and proxy) attention fast, all computing the same function.

Each query attends a near field (its own window's real tokens) and a far field (one proxy per other
window, the mean key / mean value, with log(count) added to its logit so one proxy carries the mass
of the tokens it stands for; plus any prefix (text) tokens). All backends compute one softmax over
both fields:

- `split` (the `auto` choice on CPU): two fused attention calls, the windows batched and the far field
  for all queries at once, merged exactly through their log-sum-exps. Needs a fused kernel that
  returns the log-sum-exp: in this version the CPU flash kernel.
- `concat` (the `auto` choice elsewhere): one public `F.scaled_dot_product_attention` call over
  windows whose key set is [own window | proxies | prefix], with an additive bias (-inf on padding
  and on the window's own proxy). It copies the far field once per window, so it is slower.
- `flex`: FlexAttention with a block mask on the window-ordered sequence (compiled on CUDA).
- `xformers`: `xformers.ops.memory_efficient_attention` over windows (needs xformers, CUDA).
- `reference`: the dense masked oracle in `reference.py`.
Window attention without a far field is the same batched window SDPA in `split` and `concat`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genaccel.attention.partition import WindowPartition
from genaccel.attention.reference import reference_sparse_attention

BACKENDS = ("auto", "split", "concat", "flex", "xformers", "reference")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will run; raises when the requested one cannot run here (never a silent swap)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "split" if device.type == "cpu" else "concat"
    if backend == "split" and device.type != "cpu":
        raise RuntimeError(f"backend='split' needs a fused attention kernel that returns its log-sum-exp, which "
                           f"genaccel uses on CPU only in this version; tensors are on {device}. "
                           "Use backend='concat' or 'flex'.")
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
    window_k = partition.to_windows(k).reshape(shape)
    window_v = partition.to_windows(v).reshape(shape)
    key_parts, value_parts = [window_k], [window_v]
    if proxies:
        if partition.has_padding:
            weight = (partition.valid.to(k.dtype) / partition.counts[:, None].to(k.dtype))[..., None]  # (nW, ws, 1)
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


def _attention_with_lse(q, k, v, scale, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention returning (output, log-sum-exp of the scaled logits), on CPU."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask, scale=scale)[:2]
    return out, lse.reshape(q.shape[:-1])


_FAR_BIASES: dict[tuple, torch.Tensor] = {}


def _far_bias(partition: WindowPartition, proxies: bool, prefix_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """(1, 1, slots, far keys) bias in window order: log(count) on the proxies, -inf on a slot's own proxy."""
    if not proxies:
        return None
    key = (partition.key, prefix_len, dtype)
    bias = _FAR_BIASES.get(key)
    if bias is None:
        by_window = _bias(partition, True, prefix_len, torch.float64)[:, partition.window_size:]
        bias = by_window.repeat_interleave(partition.window_size, dim=0).to(dtype)[None, None]
        if len(_FAR_BIASES) > 64:
            _FAR_BIASES.clear()
        _FAR_BIASES[key] = bias
    return bias


def _proxies(window_x: torch.Tensor, partition: WindowPartition) -> torch.Tensor:
    """Mean over each window's real tokens: (B, H, nW, ws, D) -> (B, H, nW, D)."""
    if not partition.has_padding:
        return window_x.mean(3)
    weights = partition.valid.to(window_x.dtype) / partition.counts[:, None].to(window_x.dtype)
    return torch.einsum("bhnsd,ns->bhnd", window_x, weights)


def _split(q, k, v, partition, proxies, prefix_kv, scale, position_bias=None):
    if not proxies and prefix_kv is None:
        return _concat(q, k, v, partition, proxies, prefix_kv, scale, position_bias)
    if proxies and partition.num_windows == 1 and prefix_kv is None:
        return _concat(q, k, v, partition, False, None, scale)  # the only proxy is the query's own window
    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    slots = windows * size
    window_q, window_k, window_v = (partition.to_windows(t) for t in (q, k, v))  # (B, H, slots, D)
    mask = None
    if partition.has_padding or position_bias is not None:
        mask = torch.zeros(heads, windows, 1, size, dtype=q.dtype, device=q.device)
        if partition.has_padding:
            mask = mask + _bias(partition, False, 0, q.dtype)[None, :, None, :]
        if position_bias is not None:
            mask = mask + position_bias.to(q.dtype)[:, None]
        rows = mask.shape[2]
        mask = mask.expand(heads, windows, rows, size).reshape(1, heads * windows, rows, size)
    as_windows = lambda t: t.reshape(batch, heads * windows, size, dim)  # noqa: E731
    near, near_lse = _attention_with_lse(as_windows(window_q), as_windows(window_k), as_windows(window_v), scale, mask)
    far_k, far_v = [], []
    if proxies:
        far_k.append(_proxies(window_k.reshape(batch, heads, windows, size, dim), partition))
        far_v.append(_proxies(window_v.reshape(batch, heads, windows, size, dim), partition))
    if prefix_kv is not None:
        far_k.append(prefix_kv[0])
        far_v.append(prefix_kv[1])
    far_k, far_v = (parts[0] if len(parts) == 1 else torch.cat(parts, 2) for parts in (far_k, far_v))
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[2]
    far, far_lse = _attention_with_lse(window_q, far_k, far_v, scale, _far_bias(partition, proxies, prefix_len, q.dtype))
    # softmax over both fields = near * w + far * (1 - w) with w = sigmoid(lse_near - lse_far)
    near_share = torch.sigmoid(near_lse.reshape(batch, heads, slots) - far_lse.reshape(batch, heads, slots))
    accumulate = torch.promote_types(q.dtype, torch.float32)
    merged = torch.lerp(far.reshape(batch, heads, slots, dim).to(accumulate),
                        near.reshape(batch, heads, slots, dim).to(accumulate), near_share[..., None].to(accumulate))
    return partition.from_windows(merged.to(q.dtype))


def _concat(q, k, v, partition, proxies, prefix_kv, scale, position_bias=None):
    batch, heads, n_tokens, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    window_q = partition.to_windows(q).reshape(batch, heads * windows, size, dim)
    window_k, window_v = _window_keys(k, v, partition, proxies, prefix_kv)
    n_keys = window_k.shape[3]
    window_k = window_k.reshape(batch, heads * windows, n_keys, dim)
    window_v = window_v.reshape(batch, heads * windows, n_keys, dim)
    bias = _bias(partition, proxies, 0 if prefix_kv is None else prefix_kv[0].shape[2], q.dtype)
    if position_bias is not None:
        local = F.pad(position_bias.to(q.dtype), (0, n_keys - size))[:, None]  # (H, 1, S, keys)
        bias = local if bias is None else local + bias[None, :, None, :]
        bias = bias.expand(heads, windows, size, n_keys).reshape(1, heads * windows, size, n_keys)
    elif bias is not None:
        bias = bias[None, :, None, :].expand(heads, windows, 1, n_keys).reshape(1, heads * windows, 1, n_keys)
        if not proxies:  # padding only: a boolean mask keeps more kernels eligible
            bias = bias == 0
    out = F.scaled_dot_product_attention(window_q, window_k, window_v, attn_mask=bias, scale=scale)
    return partition.from_windows(out.view(batch, heads, windows * size, dim))


def _xformers(q, k, v, partition, proxies, prefix_kv, scale, position_bias=None):
    import xformers.ops as xops

    if position_bias is not None:
        raise ValueError("backend='xformers' does not take a position_bias; use 'split', 'concat' or 'flex'")

    batch, heads, _, dim = q.shape
    windows, size = partition.num_windows, partition.window_size
    window_q = partition.to_windows(q).reshape(batch, heads, windows, size, dim)
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
    return partition.from_windows(out)


_COMPILED_FLEX = None
_BLOCK_MASKS: dict[tuple, object] = {}


def _flex(q, k, v, partition, proxies, prefix_kv, scale, position_bias=None):
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
    window_q = partition.to_windows(q)
    key_parts = [partition.to_windows(k)]
    value_parts = [partition.to_windows(v)]
    if proxies:
        window_k, window_v = (t.view(batch, heads, windows, size, dim) for t in (key_parts[0], value_parts[0]))
        weight = (partition.valid.to(k.dtype) / partition.counts[:, None].to(k.dtype))[..., None]
        key_parts.append((window_k * weight).sum(3))
        value_parts.append((window_v * weight).sum(3))
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

    key = (partition.key, n_proxies, prefix_len)
    block_mask = _BLOCK_MASKS.get(key)
    if block_mask is None:
        block_mask = create_block_mask(mask_mod, None, None, slots, keys.shape[2], device=q.device)
        if len(_BLOCK_MASKS) > 64:
            _BLOCK_MASKS.clear()
        _BLOCK_MASKS[key] = block_mask
    out = run(window_q, keys, values, score_mod=score_mod if proxies or position_bias is not None else None,
              block_mask=block_mask, scale=scale)
    return partition.from_windows(out)


def run_windowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, *,
                 proxies: bool, scale: float, backend: str,
                 prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                 position_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch one windowed / proxy attention to the resolved backend."""
    backend = resolve_backend(backend, q.device)
    if backend == "reference":
        return reference_sparse_attention(q, k, v, partition, proxies=proxies, scale=scale, prefix_kv=prefix_kv,
                                          position_bias=position_bias).to(q.dtype)
    kernel = {"split": _split, "concat": _concat, "flex": _flex, "xformers": _xformers}[backend]
    return kernel(q, k, v, partition, proxies, prefix_kv, scale, position_bias)
