"""`visionzip` (VisionZip, CVPR 2025): dominant tokens by the vision tower's attention, plus a few
contextual tokens that the remaining ones are merged into.

As built: of K tokens, round(K * 10 / 64) are contextual (the paper's 54 + 10 split at 64, 108 + 20
at 128, 162 + 30 at 192) and the rest dominant. Dominant = the largest vision scores: the [CLS]
token's attention at the layer producing the LM's features (CLIP towers), or, for towers without
[CLS] (Qwen2-VL / 2.5-VL), the attention each token receives there, averaged over queries and heads
(the paper's own choice for SigLIP). Contextual: evenly spaced "target" tokens among the rest; every
other remaining token joins its most similar target (cosine similarity) and each target becomes
the mean of its group. Differences from the paper: merging and similarity use the LM input
embeddings (after the projector, which has already run) rather than the vision tower's keys, and
each merged token takes the position of its target token, so every kept token keeps an original
position and order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection, top_k_sorted

CONTEXTUAL_SHARE = 10 / 64


class VisionZip(PruningMethod):
    name = "visionzip"
    vision_layers = 1

    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        features = tokens.features
        n = features.shape[0]
        contextual = min(int(keep * CONTEXTUAL_SHARE + 0.5), keep - 1) if keep > 1 else 0
        dominant = top_k_sorted(tokens.vision_scores[-1], keep - contextual)
        if contextual == 0:
            return Selection(kept=dominant)
        rest_mask = torch.ones(n, dtype=torch.bool, device=features.device)
        rest_mask[dominant] = False
        rest = rest_mask.nonzero().squeeze(1)  # (n - dominant,) in order
        step = rest.numel() / contextual
        targets = rest[(torch.arange(contextual, device=features.device) * step).long()]  # evenly spaced
        others_mask = rest_mask.clone()
        others_mask[targets] = False
        others = others_mask.nonzero().squeeze(1)
        unit = F.normalize(features.float(), dim=-1)
        group = (unit[others] @ unit[targets].T).argmax(dim=1)  # (others,) -> target slot
        sums = features[targets].float().index_add(0, group, features[others].float())
        counts = torch.ones(contextual, device=features.device).index_add(
            0, group, torch.ones(others.numel(), device=features.device))
        merged = (sums / counts[:, None]).to(features.dtype)

        kept = torch.cat([dominant, targets]).sort()
        replacement = torch.cat([features[dominant], merged])[kept.indices]
        return Selection(kept=kept.values, features=replacement)
