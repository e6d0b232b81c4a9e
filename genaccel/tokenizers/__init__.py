"""genaccel.tokenizers: visual tokenizers (multi-scale HieraTok-style, continuous or FSQ-discrete).

Not a top-level `tokenizers` package: that would shadow Hugging Face's `tokenizers`.
"""

from genaccel.tokenizers.fsq import FSQ
from genaccel.tokenizers.multiscale import MultiScaleTokenizer, scale_causal_mask
from genaccel.tokenizers.reference import load_reference_tokenizer

__all__ = ["FSQ", "MultiScaleTokenizer", "load_reference_tokenizer", "scale_causal_mask"]
