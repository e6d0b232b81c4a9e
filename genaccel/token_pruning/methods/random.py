"""`random`: keep K tokens drawn uniformly without replacement (the baseline benchmarks find strong).

Each image's generator is seeded from `config.seed` and the image's place in its row at every
prefill, so the same inputs keep the same tokens, in a batch or alone.
"""

from __future__ import annotations

import torch

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection


class RandomPruning(PruningMethod):
    name = "random"

    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        n = tokens.features.shape[0]
        drawn = torch.randperm(n, generator=tokens.generator)[:keep]
        return Selection(kept=drawn.sort().values.to(tokens.features.device))
