"""Training-free visual-token pruning for multimodal LMs (lossy): fewer visual tokens in the LM.

    import genaccel
    genaccel.apply(model, genaccel.VisualTokenPruningConfig(keep=0.25, method="divprune"))
    model.generate(**inputs)          # the LM sees a quarter of each image's visual tokens
    genaccel.remove(model)            # the model exactly as before

Models: LlavaForConditionalGeneration, LlavaNextForConditionalGeneration,
Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration. Methods: see METHODS and
docs/token_pruning.md.
"""

from genaccel.token_pruning.config import PruningInputError, VisualTokenPruningConfig
from genaccel.token_pruning.methods import METHODS, ImageTokens, PruningMethod, Selection, method_class, \
    register_method
from genaccel.token_pruning.patch import apply_token_pruning, is_pruned, last_kept_positions, pruning_config, \
    remove_token_pruning

__all__ = ["METHODS", "ImageTokens", "PruningInputError", "PruningMethod", "Selection", "VisualTokenPruningConfig",
           "apply_token_pruning", "is_pruned", "last_kept_positions", "method_class", "pruning_config",
           "register_method", "remove_token_pruning"]
