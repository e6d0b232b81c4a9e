"""A compressed view of the visual tokens, for drafters only (the target always sees them all).

Each contiguous run of visual positions (one image or video) is reduced to a share of
`num_tokens` proportional to its length, either by average pooling neighbouring tokens
("pool") or by keeping the tokens with the largest score, in their original order ("norm":
the score is the L2 norm of the target's last hidden state there, a training-free saliency).
Pruning only the draft's view is lossless: verification decides what is emitted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

METHODS = ("pool", "norm")


def visual_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool mask."""
    runs, start = [], None
    for index, flag in enumerate(mask.tolist()):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, mask.shape[0]))
    return runs


def compress_visual_tokens(embeds: torch.Tensor, mask: torch.Tensor, num_tokens: int, method: str = "pool",
                           scores: torch.Tensor | None = None) -> torch.Tensor:
    """(1, L, D) embeddings -> (1, L', D) with each visual run shortened; text positions kept.

    mask: (1, L) bool visual positions; scores: (1, L) saliency, required for method="norm".
    """
    if method not in METHODS:
        raise ValueError(f"unknown visual compression {method!r}; accepted: {', '.join(METHODS)}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    if method == "norm" and scores is None:
        raise ValueError("method='norm' needs scores")
    runs = visual_runs(mask[0])
    total = sum(end - start for start, end in runs)
    if total <= num_tokens:
        return embeds
    pieces, cursor = [], 0
    for start, end in runs:
        pieces.append(embeds[:, cursor:start])
        keep = max(1, math.floor(num_tokens * (end - start) / total))
        span = embeds[:, start:end]  # (1, n, D)
        if method == "pool":
            pieces.append(F.adaptive_avg_pool1d(span.transpose(1, 2), keep).transpose(1, 2))
        else:
            top = scores[0, start:end].topk(keep).indices.sort().values
            pieces.append(span[:, top])
        cursor = end
    pieces.append(embeds[:, cursor:])
    return torch.cat(pieces, dim=1)
