"""Lossless speculative decoding for multimodal LMMs (FLASH) and training-free self-drafting.

    drafter = SelfDrafter.from_target(model)
    out = speculative_generate(model, drafter, max_new_tokens=128, do_sample=False, **inputs)
    out.sequences            # == model.generate(**inputs, max_new_tokens=128, do_sample=False)
    out.acceptance_length    # tokens emitted per target forward, including the bonus token
"""

from genaccel.speculative.drafter import Draft, Drafter, Prefill
from genaccel.speculative.flash_drafter import FlashDrafter
from genaccel.speculative.flash_head import FlashConfig, FlashHead
from genaccel.speculative.generate import SpeculativeOutput, speculative_decoding, speculative_generate
from genaccel.speculative.self_drafter import SelfDrafter
from genaccel.speculative.target import UnsupportedTargetError

__all__ = ["Draft", "Drafter", "FlashConfig", "FlashDrafter", "FlashHead", "Prefill", "SelfDrafter",
           "SpeculativeOutput", "UnsupportedTargetError", "speculative_decoding", "speculative_generate"]
