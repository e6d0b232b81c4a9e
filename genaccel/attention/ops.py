"""Functional sparse attention on (B, heads, N, D) tensors over a token grid.

`window_attention`: exact attention inside non-overlapping (optionally Swin-shifted) windows.
`proxy_attention`: training-free proxy-token attention: the query's own window exactly, every other
window through its mean key / mean value with log(tokens in it) added to the logit, merged by one
softmax (the log-sum-exp of the near and far parts). It equals dense attention when the window is
all ones and when one window covers the grid.
`joint_attention`: the same for a joint text + image sequence: text rows attend densely, image rows
attend every text token exactly plus the sparse pattern over the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genaccel.attention.backends import run_windowed
from genaccel.attention.partition import normalize_window, window_partition

Grid = tuple[int, ...]
Window = int | tuple[int, ...]


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> None:
    if q.dim() != 4 or k.shape != q.shape[:2] + k.shape[2:] or k.shape != v.shape:
        raise ValueError(f"expected q, k, v of shape (B, heads, N, D) with matching k and v; got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"self-attention over a grid needs as many keys as queries; got {q.shape[2]} and {k.shape[2]}")
    if len(grid) not in (1, 2, 3) or math.prod(grid) != q.shape[2]:
        raise ValueError(f"grid {tuple(grid)} (product {math.prod(grid)}) does not match the {q.shape[2]} "
                         "tokens; pass (h, w) for images or (t, h, w) for video")


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid, window: Window,
                     shift: bool = False, *, scale: float | None = None, backend: str = "auto",
                     prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                     position_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention inside non-overlapping windows of `grid`; `shift=True` shifts them by half a window.

    `prefix_kv`: optional (k, v) of shape (B, heads, T, D) that every query also attends exactly
    (text tokens of joint attention). `position_bias`: optional (heads, S, S) added to the logits
    of query / key pairs by their positions inside the window (Swin's relative position bias, made
    into a table), S the number of tokens in the (clamped) window. Returns (B, heads, N, D).
    """
    _check(q, k, v, grid)
    window = normalize_window(grid, window)
    partition = window_partition(tuple(grid), window, shift, q.device)
    if position_bias is not None:
        expected = (q.shape[1], partition.window_size, partition.window_size)
        if tuple(position_bias.shape) != expected:
            raise ValueError(f"position_bias must have shape (heads, S, S) = {expected} for window {window}, "
                             f"got {tuple(position_bias.shape)}")
    return run_windowed(q, k, v, partition, proxies=False, scale=_scale(q, scale), backend=backend,
                        prefix_kv=prefix_kv, position_bias=position_bias)


def proxy_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid, window: Window,
                    shift: bool = False, *, scale: float | None = None, backend: str = "auto",
                    prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Near field exact (own window), far field through one mean proxy per window.

    `shift=True` uses Swin-shifted windows for both the near field and the proxies.
    Returns (B, heads, N, D).
    """
    _check(q, k, v, grid)
    window = normalize_window(grid, window)
    partition = window_partition(tuple(grid), window, shift, q.device)
    return run_windowed(q, k, v, partition, proxies=True, scale=_scale(q, scale), backend=backend,
                        prefix_kv=prefix_kv)


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid, window: Window, *,
                    method: str, text_len: int, text_first: bool, shift: bool = False,
                    scale: float | None = None, backend: str = "auto") -> torch.Tensor:
    """Sparse attention over a joint sequence of `text_len` text tokens and a `grid` of image tokens.

    `method` is "window" or "proxy". Text queries attend every token densely; image queries attend
    every text token exactly and the image through the sparse pattern.
    """
    if method not in ("window", "proxy"):
        raise ValueError(f"method must be 'window' or 'proxy', got {method!r}")
    op = window_attention if method == "window" else proxy_attention
    if text_len == 0:
        return op(q, k, v, grid, window, shift, scale=scale, backend=backend)
    n_image = math.prod(grid)
    if q.shape[2] != n_image + text_len:
        raise ValueError(f"joint sequence has {q.shape[2]} tokens; expected {text_len} text + {n_image} image tokens")
    text_slice = slice(0, text_len) if text_first else slice(n_image, n_image + text_len)
    image_slice = slice(text_len, None) if text_first else slice(0, n_image)
    image_out = op(q[:, :, image_slice], k[:, :, image_slice], v[:, :, image_slice], grid, window, shift,
                   scale=scale, backend=backend, prefix_kv=(k[:, :, text_slice], v[:, :, text_slice]))
    text_out = F.scaled_dot_product_attention(q[:, :, text_slice], k, v, scale=_scale(q, scale))
    parts = [text_out, image_out] if text_first else [image_out, text_out]
    return torch.cat(parts, dim=2)
