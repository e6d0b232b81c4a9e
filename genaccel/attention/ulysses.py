"""Sparse attention under diffusers' Ulysses context parallelism (`ContextParallelConfig(ulysses_degree=P)`).

Each rank holds 1/P of the tokens. An all-to-all over the Ulysses group gives every rank all tokens
of 1/P of the heads; sparse attention then runs exactly as on one device (it is per head), and a
second all-to-all returns each rank its own tokens of every head. Ring attention, which splits the
keys across ranks, cannot apply a window pattern locally and is refused.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist

RING_REFUSED = ("genaccel sparse attention supports diffusers' Ulysses context parallelism only "
                "(ContextParallelConfig(ulysses_degree=P)); ring attention (ring_degree > 1) splits the keys "
                "across ranks, which a window pattern cannot use. Use ulysses_degree instead.")


def ulysses_group(context_parallel_config) -> tuple[object, int]:
    """(process group, size) of the Ulysses mesh of a diffusers ContextParallelConfig; raises for ring attention."""
    if (getattr(context_parallel_config, "ring_degree", 1) or 1) > 1:
        raise NotImplementedError(RING_REFUSED)
    mesh = getattr(context_parallel_config, "_ulysses_mesh", None)  # diffusers >= 0.36 sets it in setup()
    if mesh is None:
        raise RuntimeError("genaccel: this diffusers ContextParallelConfig has no Ulysses mesh (`_ulysses_mesh`); "
                           "call transformer.enable_parallelism(...) before running the model")
    return mesh.get_group(), mesh.size()


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Chunk p of dim 0 goes to rank p; chunk p of the result came from rank p."""
    x = x.contiguous()
    out = torch.empty_like(x)  # contiguous like x: a strided output would be filled in the wrong order
    dist.all_to_all_single(out, x, group=group)
    return out


def _heads_to_tokens(x: torch.Tensor, group, size: int) -> torch.Tensor:
    """(B, H, S/P, D) local tokens of all heads -> (B, H/P, S, D) all tokens of local heads (rank order)."""
    batch, heads, tokens, dim = x.shape
    chunks = x.reshape(batch, size, heads // size, tokens, dim).transpose(0, 1)  # (P, B, H/P, S/P, D)
    gathered = _all_to_all(chunks, group)  # chunk p now holds rank p's tokens of our heads
    return gathered.permute(1, 2, 0, 3, 4).reshape(batch, heads // size, size * tokens, dim)


def _tokens_to_heads(x: torch.Tensor, group, size: int) -> torch.Tensor:
    """Inverse of `_heads_to_tokens`."""
    batch, local_heads, tokens, dim = x.shape
    chunks = x.reshape(batch, local_heads, size, tokens // size, dim).permute(2, 0, 1, 3, 4)
    scattered = _all_to_all(chunks, group)  # chunk p: our tokens of rank p's heads
    return scattered.transpose(0, 1).reshape(batch, size * local_heads, tokens // size, dim)


def _text_order(sequence: int, size: int, text_local: int, text_first: bool, device) -> torch.Tensor:
    """Indices that turn rank-ordered [text_p | image_p] chunks into [all text | all image] (or image first)."""
    local = sequence // size
    offsets = torch.arange(size, device=device)[:, None] * local
    text = (offsets + (torch.arange(text_local, device=device) if text_first
                       else local - text_local + torch.arange(text_local, device=device))).reshape(-1)
    image_start = text_local if text_first else 0
    image = (offsets + image_start + torch.arange(local - text_local, device=device)).reshape(-1)
    return torch.cat([text, image] if text_first else [image, text])


def ulysses_attention(attend: Callable[..., torch.Tensor], query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, text_len_local: int, text_first: bool, context_parallel_config) -> torch.Tensor:
    """`attend(q, k, v, text_len=...)` over all tokens, run on this rank's heads; returns this rank's tokens.

    query, key, value: (B, H, S/P, D), this rank's tokens ([text | image] or [image | text]).
    """
    group, size = ulysses_group(context_parallel_config)
    heads = query.shape[1]
    if heads % size:
        raise ValueError(f"Ulysses context parallelism needs the heads ({heads}) divisible by ulysses_degree ({size})")
    query, key, value = (_heads_to_tokens(t, group, size) for t in (query, key, value))
    order = None
    if text_len_local:
        order = _text_order(query.shape[2], size, text_len_local, text_first, query.device)
        query, key, value = (t.index_select(2, order) for t in (query, key, value))
    out = attend(query, key, value, text_len=size * text_len_local)
    if order is not None:
        out = torch.empty_like(out).index_copy_(2, order, out)
    return _tokens_to_heads(out, group, size)
