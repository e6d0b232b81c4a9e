"""What `genaccel.apply(model, VisualTokenPruningConfig(...))` does to a multimodal LM: how many visual
tokens of each image the language model keeps, and which method chooses them."""

from __future__ import annotations

import math
from dataclasses import dataclass


class PruningInputError(ValueError):
    """The inputs of a call do not fit the applied pruning (e.g. a count above an image's tokens)."""


@dataclass(frozen=True)
class VisualTokenPruningConfig:
    """Training-free visual-token pruning of a LLaVA / LLaVA-NeXT / Qwen2-VL / Qwen2.5-VL instance (lossy).

    keep: an int is a count of visual tokens kept per image (>= 1, and at most what the image has,
        checked at call time); a float is a fraction in (0, 1] of each image's visual tokens,
        rounded half up, at least 1. `keep=1.0` (or a count equal to the image's tokens) leaves the
        model exactly as it was. Note `keep=1` is one token, `keep=1.0` is all of them.
    method: a name from `genaccel.token_pruning.METHODS` ("fastv", "visionzip", "divprune",
        "random", "cls").
    layer: fastv only: the number of language-model layers that see every visual token; pruning
        happens between layer `layer - 1` and layer `layer`, scored by layer `layer - 1`'s attention.
    seed: random only: seeds a generator per image at every prefill (same inputs, same tokens, in a
        batch or alone).
    """

    keep: int | float
    method: str
    layer: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        from genaccel.token_pruning.methods import method_class

        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float)):
            raise ValueError(f"keep must be a count >= 1 (int) or a fraction in (0, 1] (float), got {keep!r}")
        if isinstance(keep, int) and keep < 1:
            raise ValueError(f"keep must be a count >= 1 (int) or a fraction in (0, 1] (float), got {keep!r}")
        if isinstance(keep, float) and not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be a count >= 1 (int) or a fraction in (0, 1] (float), got {keep!r}")
        method_class(self.method)  # raises for unknown names, listing the accepted ones
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 1:
            raise ValueError(f"layer (fastv) must be an int >= 1 (the layers that see every visual token), "
                             f"got {self.layer!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    def tokens_to_keep(self, num_tokens: int, image: int = 0) -> int:
        """How many of an image's `num_tokens` visual tokens stay; raises when a count exceeds them."""
        if isinstance(self.keep, int):
            if self.keep > num_tokens:
                raise PruningInputError(f"VisualTokenPruningConfig(keep={self.keep}) asks for {self.keep} visual "
                                        f"tokens but image {image} has {num_tokens}; use a count <= {num_tokens} or a "
                                        "fraction in (0, 1]")
            return self.keep
        return max(1, min(num_tokens, math.floor(self.keep * num_tokens + 0.5)))

    def describe(self) -> str:
        """`METHOD:KEEP`, the form `genaccel caption --prune` takes."""
        return f"{self.method}:{self.keep}"
