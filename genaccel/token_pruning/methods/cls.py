"""`cls` ([CLS] token pruning, VTC-CLS): keep the K tokens the vision tower's [CLS] token attends to
most, with the score ensembled (averaged) over the last layers of the tower up to the one that
produces the LM's features (up to 4 layers).

As built: pruning happens once, before the language model. Towers without a [CLS] token (Qwen2-VL /
2.5-VL) use the attention each token receives instead (as `visionzip` does), averaged over their
last four blocks; for Qwen2.5-VL its last four full-attention blocks (its windowed blocks do not
see the whole image).
"""

from __future__ import annotations

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection, top_k_sorted


class ClsAttentionPruning(PruningMethod):
    name = "cls"
    vision_layers = 4

    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        return Selection(kept=top_k_sorted(tokens.vision_scores.float().mean(dim=0), keep))
