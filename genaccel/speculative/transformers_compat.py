"""Everything genaccel's speculative decoding needs from transformers that moved between releases.

Speculative decoding runs inside `model.generate(custom_generate=...)`, which is public, and uses
two other public pieces: `prepare_inputs_for_generation` (documented, overridden per model to build
multimodal inputs) and `DynamicCache`. It does *not* call `generate`'s private helpers
(`_update_model_kwargs_for_generation`, `_prepare_cache_for_generation`): the per-token inputs are
extended here, and the cache is made here. Each version quirk is handled in one place below, with
a comment naming the releases it concerns. Tested releases: see `TESTED_TRANSFORMERS` and CI.

Anything a newer release hands us that this module does not understand raises
`TransformersIncompatibilityError` rather than decoding with inputs it may have got wrong.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
import transformers
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

# The lowest and the newest release this module was tested with (the lower-bound and newest CI jobs).
TESTED_TRANSFORMERS = ("5.4.0", "5.24.0")

# Inputs of one position per token that the decoding loop extends itself (mirroring what `generate`
# does between its own steps). transformers 5.4-5.24 use exactly these.
_PER_TOKEN_INPUTS = ("attention_mask", "position_ids", "token_type_ids", "mm_token_type_ids")


class TransformersIncompatibilityError(RuntimeError):
    """The installed transformers passes or expects something this version of genaccel does not handle."""

    def __init__(self, what: str):
        super().__init__(f"{what} (transformers {transformers.__version__}; genaccel's speculative decoding is "
                         f"tested with transformers {TESTED_TRANSFORMERS[0]} to {TESTED_TRANSFORMERS[1]}). "
                         "Install a release in that range, or report this incompatibility.")


def cache_keyword(module: torch.nn.Module) -> str:
    """The keyword under which `module.forward` takes its KV cache.

    transformers <= 5.23 call it `past_key_values`; 5.24 renamed it `cache` in every model's forward,
    in `prepare_inputs_for_generation`, in model outputs and in the kwargs `generate` hands to a
    `custom_generate` (`past_key_values` is still accepted there, with a deprecation warning, until 6.0).
    """
    parameters = inspect.signature(module.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise TransformersIncompatibilityError(
        f"{type(module).__name__}.forward takes neither `cache` nor `past_key_values`")


def pop_cache(model_kwargs: dict[str, Any]) -> Any:
    """Remove and return the cache from `generate`'s model kwargs, under whichever name it uses.

    transformers 5.4-5.23 put an empty DynamicCache under `past_key_values` before calling a
    `custom_generate`, 5.24 under `cache`; 5.0-5.2 put none at all (the model made its own).
    """
    caches = [model_kwargs.pop(name) for name in ("cache", "past_key_values") if name in model_kwargs]
    caches = [cache for cache in caches if cache is not None]
    if len(caches) > 1 and caches[0] is not caches[1]:
        raise ValueError("got two different caches (`cache` and `past_key_values`); pass one")
    return caches[0] if caches else None


def croppable_cache(cache: Any) -> DynamicCache:
    """The cache to decode with: `cache` if it can be rolled back, else a fresh full-length DynamicCache.

    Rejected draft tokens are removed from the cache, so it must be a DynamicCache of full (not
    sliding-window) layers. `generate` builds its DynamicCache from the model config, which gives
    sliding-window models sliding layers that cannot be rolled back once the window is passed (`crop`
    raises "sliding window size was already reached"); an *empty* one is replaced by a DynamicCache
    without config (full layers), as transformers' own assisted generation does. The attention mask,
    built from the config, still applies the sliding window, so the tokens are those of `generate`
    (tested on 5.4 and 5.24 in tests/speculative/test_architectures.py); the full cache keeps every
    position, not only the last window.
    """
    if cache is None:
        return DynamicCache()
    if not isinstance(cache, DynamicCache):
        raise ValueError(f"speculative decoding needs a DynamicCache (it is cropped on rejection), got "
                         f"{type(cache).__name__}; leave cache_implementation unset (or pass "
                         "cache_implementation='dynamic' where the model's generation config sets another).")
    if cache.get_seq_length() != 0:
        raise ValueError("speculative decoding starts from an empty cache; do not pass a filled cache")
    layers = getattr(cache, "layers", [])
    if any(getattr(layer, "is_sliding", False) for layer in layers):
        return DynamicCache()
    if any(not isinstance(layer, DynamicLayer) for layer in layers):
        raise ValueError("speculative decoding needs a DynamicCache of full-attention layers, got layers "
                         f"{sorted({type(layer).__name__ for layer in layers})}")
    return cache


def use_given_cache(model: PreTrainedModel, model_inputs: dict[str, Any], cache: DynamicCache,
                    sequence_length: int) -> DynamicCache:
    """Make the forward of `model_inputs` fill a cache of ours; return the cache it will fill.

    `prepare_inputs_for_generation` normally passes `cache` through. Phi-3 / PhiMoE / Phi-4-multimodal
    drop it (None) the first time the sequence exceeds `original_max_position_embeddings`, to recompute
    every position with the long RoPE factors; the model would then build its own cache, which the loop
    would not crop (the old one would be cropped and reused: silently wrong tokens). From 5.20 that
    forward reads the whole sequence and gets a fresh full-layer DynamicCache here (or `cache` itself
    while it is empty); 5.4-5.19 feed only the new tokens (`check_rope_supported` refuses those up front).
    """
    keyword = cache_keyword(model)
    given = model_inputs.get(keyword)
    if given is cache:
        return cache
    if given is not None:
        raise TransformersIncompatibilityError(
            f"{type(model).__name__}.prepare_inputs_for_generation replaced the cache with a {type(given).__name__}")
    input_ids = model_inputs.get("input_ids")
    if input_ids is None or input_ids.shape[-1] != sequence_length:
        raise TransformersIncompatibilityError(
            f"{type(model).__name__}.prepare_inputs_for_generation dropped the cache without feeding the whole "
            f"sequence ({sequence_length} tokens) again")
    fresh = cache if cache.get_seq_length() == 0 else DynamicCache()
    model_inputs[keyword] = fresh
    return fresh


def _rope_parameter_sets(config: Any) -> list[dict]:
    """The RoPE parameter dicts of a text config (`rope_parameters` in 5.x, per layer type or not;
    `rope_scaling` in configs written for 4.x)."""
    found = []
    for name in ("rope_parameters", "rope_scaling"):
        value = getattr(config, name, None)
        if not isinstance(value, dict):
            continue
        if any(isinstance(item, dict) for item in value.values()):  # {layer_type: {...}}
            found.extend(item for item in value.values() if isinstance(item, dict))
        else:
            found.append(value)
    return found


NO_LIMIT = 1 << 30  # what exact_draft_limit returns when nothing limits the drafts

# transformers before 5.13 keep dynamic-NTK frequencies between calls (`dynamic_frequency_update` stored
# the longest length seen under a misspelt attribute), so even `generate` is not repeatable there.
DYNAMIC_ROPE_STATELESS_FROM = (5, 13)
# transformers before 5.20: Phi-3 / PhiMoE drop the cache at the long-RoPE switch but still slice the
# inputs to the new tokens, so `generate` itself computes that step over one token without its past.
LONGROPE_SWITCH_RECOMPUTED_FROM = (5, 20)


def installed_release() -> tuple[int, int]:
    """(major, minor) of the installed transformers."""
    major, minor = re.match(r"(\d+)\.(\d+)", transformers.__version__).groups()
    return int(major), int(minor)


def _rope_thresholds(model: PreTrainedModel) -> list[tuple[str, int]]:
    """(rope_type, length) for each RoPE whose frequencies depend on the longest position of a forward
    (`modeling_rope_utils.dynamic_rope_update`): "longrope" switches from short to long factors beyond
    `original_max_position_embeddings`; "dynamic" (NTK) rescales beyond `max_position_embeddings`."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    thresholds = []
    for parameters in _rope_parameter_sets(config):
        rope_type = parameters.get("rope_type", parameters.get("type"))
        if rope_type == "longrope":
            switch = parameters.get("original_max_position_embeddings",
                                    getattr(config, "original_max_position_embeddings", None))
            if switch is not None:
                thresholds.append(("longrope", int(switch)))
        elif rope_type == "dynamic":
            threshold = config.max_position_embeddings
            if parameters.get("original_max_position_embeddings") is not None:
                threshold = min(threshold, parameters["original_max_position_embeddings"])
            thresholds.append(("dynamic", int(threshold)))
    return thresholds


def check_rope_supported(model: PreTrainedModel, max_length: int) -> None:
    """Refuse RoPE variants the installed release cannot decode repeatably up to `max_length` tokens."""
    installed = installed_release()
    release = ".".join(map(str, installed))
    for rope_type, threshold in _rope_thresholds(model):
        if rope_type == "dynamic" and installed < DYNAMIC_ROPE_STATELESS_FROM:
            raise ValueError(
                f"{type(model).__name__} uses dynamic-NTK RoPE, whose frequencies transformers {release} keeps "
                "from one call to the next (generate itself is not repeatable); speculative decoding needs "
                "transformers >= 5.13 for it")
        if rope_type == "longrope" and max_length > threshold and installed < LONGROPE_SWITCH_RECOMPUTED_FROM:
            raise ValueError(
                f"{type(model).__name__} switches to its long RoPE factors beyond original_max_position_embeddings="
                f"{threshold} tokens, which transformers {release} does not recompute correctly (generate neither); "
                f"keep prompt + max_new_tokens <= {threshold} or use transformers >= 5.20")


def exact_draft_limit(model: PreTrainedModel, sequence_length: int) -> int:
    """The most draft tokens a verification forward at `sequence_length` tokens may carry and still
    compute what one-token decoding steps compute (`NO_LIMIT` when nothing limits it).

    RoPE variants that pick their frequencies from the longest position of each forward make a forward
    over k + 1 positions differ from k + 1 single steps when it crosses their threshold:
    - "longrope" (Phi-3): short factors while the sequence is at most `original_max_position_embeddings`,
      long factors beyond: a forward may not cross that length (after it, any length is exact);
    - "dynamic" (NTK): beyond `max_position_embeddings` the frequencies change with every length, so
      forwards stay below it and beyond it decoding is one token per target pass (still exact, no speedup).
    """
    limit = NO_LIMIT
    for rope_type, threshold in _rope_thresholds(model):
        if rope_type == "longrope" and sequence_length <= threshold:
            limit = min(limit, threshold - sequence_length)
        elif rope_type == "dynamic":
            limit = min(limit, max(0, threshold - 1 - sequence_length))
    return limit


def drop_last_tokens(cache: DynamicCache, count: int) -> None:
    """Remove the keys and values of the last `count` positions from every layer of `cache`.

    `crop(-n)` removes n positions in every 5.x release, but `crop(0)` empties the cache in 5.4-5.13
    (0 was an absolute length there) and is a no-op from 5.14 (a count): never call it with 0.
    """
    if count < 0:
        raise ValueError(f"cannot drop {count} tokens")
    if count:
        cache.crop(-count)


def returned_cache(outputs: Any) -> Any:
    """The cache a model's forward returned (`outputs.cache` from 5.24, `outputs.past_key_values` before)."""
    for name in ("cache", "past_key_values"):
        if name in outputs:
            return outputs[name]
    return None


def prepare_inputs(model: PreTrainedModel, input_ids: torch.LongTensor, model_kwargs: dict[str, Any],
                   cache: DynamicCache, new_tokens: int | None) -> dict[str, Any]:
    """The model's forward inputs for the last `new_tokens` of `input_ids` (all of them when None: prefill).

    `next_sequence_length` (how many trailing tokens the forward reads) exists from transformers 5.3;
    earlier releases sliced by `cache_position` instead, which is why 5.4 is the lower bound.
    """
    kwargs = dict(model_kwargs)
    kwargs[cache_keyword(model)] = cache
    if new_tokens is None:
        return model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **kwargs)
    return model.prepare_inputs_for_generation(input_ids, next_sequence_length=new_tokens, **kwargs)


def check_per_token_inputs(model_kwargs: dict[str, Any], sequence_length: int) -> None:
    """Refuse per-token inputs that `extend_per_token_inputs` would not extend (a newer release's addition)."""
    for name, value in model_kwargs.items():
        if name in _PER_TOKEN_INPUTS or not isinstance(value, torch.Tensor) or value.ndim < 2:
            continue
        if name.endswith(("_ids", "_mask")) and value.shape[-1] == sequence_length:
            raise TransformersIncompatibilityError(
                f"generate passed the per-token input `{name}` {tuple(value.shape)}, which speculative decoding "
                f"does not know how to extend over new tokens (it extends {', '.join(_PER_TOKEN_INPUTS)})")


def extend_per_token_inputs(model_kwargs: dict[str, Any], num_new_tokens: int) -> dict[str, Any]:
    """`model_kwargs` with its per-token inputs extended over `num_new_tokens` generated text tokens.

    What `generate` does between steps in 5.4-5.24: the attention mask gains ones, position ids
    (2-D, or 3-D multimodal RoPE ids of Qwen2-VL) continue from their last value, token types repeat
    their last values and multimodal token types are 0 (text).
    """
    extended = dict(model_kwargs)
    if num_new_tokens == 0:
        return extended
    if (mask := extended.get("attention_mask")) is not None:
        extended["attention_mask"] = torch.cat([mask, mask.new_ones((mask.shape[0], num_new_tokens))], dim=-1)
    if (positions := extended.get("position_ids")) is not None:
        steps = torch.arange(1, num_new_tokens + 1, dtype=positions.dtype, device=positions.device)
        extended["position_ids"] = torch.cat([positions, positions[..., -1:] + steps], dim=-1)
    if (token_types := extended.get("token_type_ids")) is not None:
        extended["token_type_ids"] = torch.cat([token_types, token_types[:, -num_new_tokens:]], dim=-1)
    if (mm_types := extended.get("mm_token_type_ids")) is not None:
        extended["mm_token_type_ids"] = torch.cat(
            [mm_types, mm_types.new_zeros((mm_types.shape[0], num_new_tokens))], dim=-1)
    return extended
