"""The parts of a target model that drafters read: text decoder, embeddings, LM head, image span.

Works for LLaVA-style (`LlavaForConditionalGeneration`), Qwen2-VL / Qwen2.5-VL and text-only
causal LMs: all expose `get_decoder()`, `get_input_embeddings()` and `get_output_embeddings()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


@dataclass(frozen=True)
class TargetSpec:
    """What a drafter must agree on with its target (checked before decoding)."""

    model_type: str
    vocab_size: int
    hidden_size: int

    def check_matches(self, other: "TargetSpec", drafter_name: str) -> None:
        if (self.vocab_size, self.hidden_size) != (other.vocab_size, other.hidden_size):
            raise ValueError(
                f"{drafter_name} was built for a target with vocab_size={self.vocab_size}, "
                f"hidden_size={self.hidden_size} ({self.model_type}), but the target has "
                f"vocab_size={other.vocab_size}, hidden_size={other.hidden_size} ({other.model_type}); "
                "build the drafter from this target (from_target) or load one trained for it."
            )


def text_config(model: PreTrainedModel):
    """The config of the language part (the model's own config for text-only LMs)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def target_spec(model: PreTrainedModel) -> TargetSpec:
    lm_head = output_head(model)
    return TargetSpec(model_type=model.config.model_type, vocab_size=lm_head.weight.shape[0],
                      hidden_size=lm_head.weight.shape[1])


def text_decoder(model: PreTrainedModel) -> nn.Module:
    """The text transformer (embeddings, decoder layers, final norm) of the target."""
    decoder = model.get_decoder()
    if decoder is None or not hasattr(decoder, "layers"):
        raise TypeError(f"{type(model).__name__} has no text decoder with `layers`; supported targets are "
                        "LLaVA-style, Qwen2-VL / Qwen2.5-VL and decoder-only causal LMs.")
    return decoder


def output_head(model: PreTrainedModel) -> nn.Linear:
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__} has no linear LM head (get_output_embeddings returned {head!r}).")
    return head


def image_token_ids(model: PreTrainedModel) -> list[int]:
    """Placeholder token ids whose positions hold visual features (empty for text-only LMs)."""
    config = model.config
    ids = []
    for name in ("image_token_id", "image_token_index", "video_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids


def visual_mask(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: True where input_ids is an image/video placeholder token."""
    ids = image_token_ids(model)
    if not ids:
        return torch.zeros_like(input_ids, dtype=torch.bool)
    return torch.isin(input_ids, torch.tensor(ids, device=input_ids.device))


class LastHiddenStateRecorder:
    """Keeps the last_hidden_state of each forward of one decoder instance (a hook removed by close)."""

    def __init__(self, decoder: nn.Module):
        self.value: torch.Tensor | None = None
        self._handle = decoder.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args, output) -> None:
        self.value = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def close(self) -> None:
        self._handle.remove()
