"""The interface every pruning method implements: given one image's visual tokens, choose K of them.

A method sees one image at a time (`ImageTokens`) and returns a `Selection`: the indices of the
tokens that stay, sorted (the language model keeps them in their original order and at their
original positions), and optionally new features for those slots (methods that merge the dropped
tokens into the kept ones). Where the tokens are removed is the method's `stage`:
"before_lm" (from the language model's input) or "in_lm" (between two decoder layers, fastv).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from genaccel.token_pruning.config import VisualTokenPruningConfig


@dataclass
class ImageTokens:
    """One image's visual tokens as the language model receives them."""

    features: torch.Tensor  # (n, D) the LM input embeddings at this image's positions, in sequence order
    vision_scores: torch.Tensor | None  # (layers, n) vision-tower attention scores (see vision_attention), or None
    text_attention: torch.Tensor | None  # (n,) fastv: attention of the last prompt token at layer k - 1, or None
    image_index: int  # the image's index in the batch (row-major), for messages
    generator: torch.Generator  # seeded from config.seed and the image's place in its row (random)


@dataclass
class Selection:
    """What stays of one image: `kept` (K,) sorted token indices; `features` (K, D) replacements or None."""

    kept: torch.Tensor
    features: torch.Tensor | None = None


class PruningMethod(ABC):
    """A strategy choosing K of an image's n visual tokens (n > K >= 1 when `select` is called)."""

    name: ClassVar[str]
    stage: ClassVar[str] = "before_lm"  # or "in_lm"
    #: how many vision-tower layers' attention scores it reads (0: none; 1: the layer producing the
    #: LM's features; more: that layer and the ones before it, as many as the tower has)
    vision_layers: ClassVar[int] = 0

    def __init__(self, config: VisualTokenPruningConfig):
        self.config = config

    @abstractmethod
    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        """Choose `keep` of the image's tokens."""


def top_k_sorted(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` largest scores, in increasing index order (ties: lower index first)."""
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    return order[:keep].sort().values
