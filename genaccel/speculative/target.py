"""The parts of a target model that drafters read: text decoder, embeddings, LM head, image span.

Works for LLaVA-style (`LlavaForConditionalGeneration`), Qwen2-VL / Qwen2.5-VL and text-only
causal LMs: all expose `get_decoder()`, `get_input_embeddings()` and `get_output_embeddings()`.
`check_target_supported` refuses, before any decoding, the targets whose state the verification
loop cannot roll back to the accepted tokens.
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


# Model types whose decoder keeps a recurrent / convolutional / linear-attention state next to (or
# instead of) its KV cache. That state summarises every token fed so far, so it cannot be cut back to
# the accepted tokens with `crop` the way keys and values can. A backstop for `layer_types` below,
# which some releases do not expose for these models (transformers 5.4: Mamba, Jamba, Bamba, Zamba).
RECURRENT_MODEL_TYPES = frozenset({
    "mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "falcon_h1", "recurrent_gemma", "lfm2", "lfm2_moe",
    "lfm2_vl", "qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "zamba", "zamba2",
    "granitemoehybrid", "nemotron_h", "minimax", "xlstm", "rwkv", "plamo2", "kimi_linear", "olmo_hybrid",
})
# `layer_types` / `block_types` entries of layers whose cache entries are keys and values of past
# positions (croppable), as verified by tests/speculative/test_architectures.py.
_ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention", "attention"})
# Substrings of layer types that keep a state summarising all past tokens.
_STATEFUL_LAYER_MARKERS = ("linear", "mamba", "conv", "recurrent", "hybrid", "ssm", "rwkv", "lstm")


class UnsupportedTargetError(ValueError):
    """The target's architecture cannot be decoded speculatively (its state cannot be rolled back)."""


def _configs(model: PreTrainedModel) -> list:
    configs = [model.config]
    text = text_config(model)
    if text is not model.config:
        configs.append(text)
    return configs


def check_target_supported(model: PreTrainedModel) -> None:
    """Raise UnsupportedTargetError when speculative decoding cannot be exact on `model`.

    Rejected drafts are undone by cropping the KV cache; that needs every layer's state to be keys
    and values of past positions. Recurrent and hybrid models (Mamba, Jamba, RecurrentGemma, LFM2,
    Qwen3-Next, ...) and models with cross-attention keys in the same cache (Mllama) are refused.
    """
    name = type(model).__name__
    for config in _configs(model):
        model_type = getattr(config, "model_type", "")
        layer_types = {str(kind) for kind in (getattr(config, "layer_types", None) or ())}
        layer_types |= {str(kind) for kind in (getattr(config, "block_types", None) or ())}
        other = layer_types - _ATTENTION_LAYER_TYPES
        stateful = sorted(kind for kind in other if any(marker in kind for marker in _STATEFUL_LAYER_MARKERS))
        if model_type in RECURRENT_MODEL_TYPES or stateful:
            detail = f"layers of type {', '.join(stateful)}" if stateful else f"recurrent model type {model_type!r}"
            raise UnsupportedTargetError(
                f"speculative decoding cannot run on {name} ({detail}): its recurrent / convolutional state cannot "
                "be rolled back by cropping the cache after a rejected draft; supported are attention-only decoders.")
        if other:
            raise UnsupportedTargetError(
                f"speculative decoding is not verified on {name}'s layers of type {', '.join(sorted(other))}: cropping "
                f"their cache may not undo rejected drafts; supported layer types are "
                f"{', '.join(sorted(_ATTENTION_LAYER_TYPES))}.")
        if getattr(config, "cross_attention_layers", None) or model_type in ("mllama", "mllama_text_model"):
            raise UnsupportedTargetError(
                f"speculative decoding cannot run on {name}: its cross-attention layers keep the image keys in the "
                "same cache that rejected drafts are cropped from; supported are decoders that read the image as "
                "tokens of the sequence (LLaVA-style, Qwen2-VL, ...).")
    if model.config.is_encoder_decoder:
        raise UnsupportedTargetError(f"speculative decoding supports decoder-only targets, {name} is encoder-decoder")


def check_layer_skip_supported(model: PreTrainedModel) -> None:
    """Raise UnsupportedTargetError where the target's first layers cannot run on their own as a draft."""
    for config in _configs(model):
        if getattr(config, "altup_num_inputs", None) is not None:  # Gemma3n
            raise UnsupportedTargetError(
                f"SelfDrafter cannot draft with {type(model).__name__}'s first layers: its AltUp decoder carries "
                f"{config.altup_num_inputs} hidden-state streams (4-D hidden states) and per-layer inputs that a "
                "truncated decoder does not rebuild; use FlashDrafter on this target.")


def text_decoder(model: PreTrainedModel) -> nn.Module:
    """The text transformer (embeddings, decoder blocks, final norm) of the target; its output has
    `last_hidden_state`. GPT-2-style models (blocks under `h` or `blocks`) qualify too."""
    decoder = model.get_decoder()
    if not isinstance(decoder, nn.Module) or decoder is model:
        raise TypeError(f"{type(model).__name__}.get_decoder() returned {type(decoder).__name__}, not its text "
                        "decoder; supported targets are LLaVA-style, Qwen2-VL / Qwen2.5-VL and decoder-only "
                        "causal LMs.")
    return decoder


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The text decoder's `layers` (what a layer-skip drafter truncates); TypeError when it has none."""
    decoder = text_decoder(model)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"SelfDrafter needs a text decoder with `layers` to truncate; {type(model).__name__}'s "
                        f"{type(decoder).__name__} has none (its blocks are elsewhere, e.g. `h`); use FlashDrafter, "
                        "which does not need them, or a Llama-style decoder.")
    return layers


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
