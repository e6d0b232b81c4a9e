"""Vision-tower attention scores without eager attention: the q / k projections of the chosen layers
are hooked and the one row or column of the attention map a method needs is recomputed from them.

Two scores per visual token of the tower's sequence:
- "cls": the attention of the [CLS] token (position 0) to every token, averaged over heads
  (CLIP towers, LLaVA / LLaVA-NeXT);
- "received": the attention each token receives, averaged over all queries and heads (towers
  without [CLS]: Qwen2-VL / Qwen2.5-VL; VisionZip's choice for SigLIP).
Scores are recorded only while `active()` is true (genaccel's wrapper of `get_image_features`).
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Callable

import torch
from torch import nn

# the most attention-map entries held at once while summing the attention each token receives
_CHUNK_ELEMENTS = 1 << 24


def cls_attention(query_cls: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, H, d) [CLS] queries and (B, N, H, d) keys -> (B, N) softmax attention averaged over heads."""
    logits = torch.einsum("bhd,bnhd->bhn", query_cls.float(), keys.float()) * scale
    return logits.softmax(dim=-1).mean(dim=1)


def received_attention(queries: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, H, d) queries and keys of one sequence -> (N,) attention each key receives, mean over queries and heads."""
    n, heads, _ = queries.shape
    q = queries.float().transpose(0, 1)  # (H, N, d)
    k = keys.float().transpose(0, 1)
    total = torch.zeros(n, device=queries.device)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, heads * n))
    for start in range(0, n, chunk):
        weights = (q[:, start:start + chunk] @ k.transpose(1, 2) * scale).softmax(dim=-1)  # (H, c, N)
        total += weights.sum(dim=(0, 1))
    return total / (heads * n)


class _AttentionRecorder:
    """Scores recorded per hooked attention module, one tower call at a time, and the hooks that record them."""

    def __init__(self, count: int, active: Callable[[], bool]):
        self.active = active
        self.scores: list[torch.Tensor | None] = [None] * count
        self.handles: list = []

    def take(self) -> list[torch.Tensor]:
        """Each hooked module's scores of the last tower call, (B, N) or (N,) per module; cleared."""
        if any(score is None for score in self.scores):
            raise RuntimeError("the vision tower ran without passing through every hooked attention module")
        scores, self.scores = self.scores, [None] * len(self.scores)
        return scores

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class ProjectionAttentionRecorder(_AttentionRecorder):
    """CLIP-style attention modules (`q_proj`, `k_proj`, (B, N, H * d)): "cls" or "received" per layer."""

    def __init__(self, attentions: list[nn.Module], score: str, active: Callable[[], bool]):
        if score not in ("cls", "received"):
            raise ValueError(f"score must be 'cls' or 'received', got {score!r}")
        super().__init__(len(attentions), active)
        self.score = score
        self._queries: list[torch.Tensor | None] = [None] * len(attentions)
        for index, attention in enumerate(attentions):
            self.handles.append(attention.q_proj.register_forward_hook(partial(self._query, index)))
            self.handles.append(attention.k_proj.register_forward_hook(partial(self._key, index, attention)))

    def _query(self, index: int, module: nn.Module, args, output: torch.Tensor) -> None:
        if self.active():
            self._queries[index] = output

    def _key(self, index: int, attention: nn.Module, module: nn.Module, args, output: torch.Tensor) -> None:
        if not self.active():
            return
        queries, self._queries[index] = self._queries[index], None
        heads = attention.num_heads
        scale = getattr(attention, "scale", None) or getattr(attention, "scaling")
        batch, length, _ = output.shape
        keys = output.view(batch, length, heads, -1)
        queries = queries.view(batch, length, heads, -1)
        if self.score == "cls":
            self.scores[index] = cls_attention(queries[:, 0], keys, scale)
        else:
            self.scores[index] = torch.stack([received_attention(q, k, scale) for q, k in zip(queries, keys)])

class QwenVisionAttentionRecorder(_AttentionRecorder):
    """Qwen2-VL / 2.5-VL vision attention (fused `qkv`, rotary, `cu_seqlens`): "received" per block.

    Scores are per patch in the order the block sees them (Qwen2.5-VL: window order)."""

    score = "received"

    def __init__(self, attentions: list[nn.Module], active: Callable[[], bool]):
        super().__init__(len(attentions), active)
        self._inputs: list[tuple | None] = [None] * len(attentions)
        for index, attention in enumerate(attentions):
            rotary = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb_vision")
            self.handles.append(attention.register_forward_pre_hook(partial(self._inputs_of, index), with_kwargs=True))
            self.handles.append(attention.qkv.register_forward_hook(partial(self._qkv, index, attention, rotary)))

    def _inputs_of(self, index: int, module: nn.Module, args, kwargs) -> None:
        if self.active():
            cu_seqlens = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
            self._inputs[index] = (cu_seqlens, kwargs.get("position_embeddings"))

    def _qkv(self, index: int, attention: nn.Module, rotary, module: nn.Module, args, output: torch.Tensor) -> None:
        if not self.active():
            return
        (cu_seqlens, position_embeddings), self._inputs[index] = self._inputs[index], None
        length = output.shape[0]
        queries, keys, _ = output.reshape(length, 3, attention.num_heads, -1).unbind(1)  # (N, H, d) each
        cos, sin = position_embeddings
        queries, keys = rotary(queries, keys, cos, sin)
        bounds = cu_seqlens.tolist()
        self.scores[index] = torch.cat([received_attention(queries[s:e], keys[s:e], attention.scaling)
                                        for s, e in zip(bounds[:-1], bounds[1:])])
