"""`divprune` (DivPrune, CVPR 2025): keep the most diverse tokens, a greedy max-min diversity subset.

Distance = 1 - cosine similarity of the LM input embeddings (after the projector), as in the paper's
code. The first token is the one farthest from its nearest neighbour; each next one maximises its
distance to the nearest token already kept. Kept tokens keep their order. One difference from the
reference code: a token already kept is never chosen again (its score is -inf), so duplicated
features cannot make the subset smaller than K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection


def max_min_diverse(features: torch.Tensor, keep: int) -> torch.Tensor:
    """(n, D) -> (keep,) sorted indices of a greedy max-min diverse subset under cosine distance."""
    unit = F.normalize(features.float(), dim=-1)
    distance = 1.0 - unit @ unit.T  # (n, n)
    n = distance.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool, device=features.device)
    if n > 1:  # nearest other token: the second smallest distance of each column (the smallest is itself)
        first = distance.topk(2, dim=0, largest=False).values[1].argmax()
    else:
        first = torch.zeros((), dtype=torch.long, device=features.device)
    selected = [int(first)]
    chosen[first] = True
    nearest = distance[first].clone()  # (n,) distance of each token to its nearest chosen token
    for _ in range(keep - 1):
        nearest = nearest.masked_fill(chosen, float("-inf"))
        index = int(nearest.argmax())
        selected.append(index)
        chosen[index] = True
        nearest = torch.minimum(nearest, distance[index])
    return torch.tensor(sorted(selected), device=features.device)


class DivPrune(PruningMethod):
    name = "divprune"

    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        return Selection(kept=max_min_diverse(tokens.features, keep))
