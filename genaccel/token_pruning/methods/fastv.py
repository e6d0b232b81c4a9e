"""`fastv` (FastV, ECCV 2024): inside the language model, after layer k, drop the visual tokens the
last prompt token attends to least at layer k - 1 (the official code's "last token" criterion; the
paper's text describes the average attention received, the code ranks by the last token).

The scores are recomputed for that one layer from its hooked q / k projections and rotary
embedding (see `genaccel.token_pruning.in_lm`), so the model keeps its fast attention kernel.
"""

from __future__ import annotations

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection, top_k_sorted


class FastV(PruningMethod):
    name = "fastv"
    stage = "in_lm"

    def select(self, tokens: ImageTokens, keep: int) -> Selection:
        if tokens.text_attention is None:
            raise RuntimeError("fastv selects inside the language model and needs the layer's attention scores")
        return Selection(kept=top_k_sorted(tokens.text_attention, keep))
