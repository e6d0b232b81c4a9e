"""The transformers compatibility layer: each version quirk it papers over, checked on the installed release."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, StaticCache

from genaccel.speculative import SelfDrafter, speculative_generate
from genaccel.speculative.transformers_compat import (
    TransformersIncompatibilityError, cache_keyword, check_per_token_inputs, croppable_cache, drop_last_tokens,
    extend_per_token_inputs)

from tiny_targets import text_inputs, tiny_llama


def filled_cache(model, length: int) -> DynamicCache:
    cache = DynamicCache()
    inputs = text_inputs(0)
    model(input_ids=inputs["input_ids"][:, :length], use_cache=True, **{cache_keyword(model): cache})
    return cache


def test_dropping_zero_tokens_keeps_the_cache():
    """`crop(0)` empties a cache in some 5.x releases; `drop_last_tokens(cache, 0)` never does."""
    model = tiny_llama()
    cache = filled_cache(model, 6)
    drop_last_tokens(cache, 0)
    assert cache.get_seq_length() == 6
    drop_last_tokens(cache, 2)
    assert cache.get_seq_length() == 4
    with pytest.raises(ValueError, match="cannot drop -1"):
        drop_last_tokens(cache, -1)


def test_per_token_inputs_continue_like_generate():
    kwargs = {"attention_mask": torch.ones(1, 3, dtype=torch.long),
              "position_ids": torch.tensor([[[0, 1, 1]], [[0, 1, 2]], [[0, 2, 5]]]),  # (3, 1, 3): multimodal RoPE
              "token_type_ids": torch.tensor([[0, 1, 1]]), "mm_token_type_ids": torch.tensor([[0, 1, 0]]),
              "pixel_values": torch.zeros(2, 3)}
    out = extend_per_token_inputs(kwargs, 2)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1]]
    assert out["position_ids"].tolist() == [[[0, 1, 1, 2, 3]], [[0, 1, 2, 3, 4]], [[0, 2, 5, 6, 7]]]
    assert out["token_type_ids"].tolist() == [[0, 1, 1, 1, 1]]
    assert out["mm_token_type_ids"].tolist() == [[0, 1, 0, 0, 0]]
    assert out["pixel_values"] is kwargs["pixel_values"]
    assert kwargs["attention_mask"].shape == (1, 3)  # the input is not changed
    assert extend_per_token_inputs(kwargs, 0) == kwargs


def test_an_unknown_per_token_input_is_refused():
    with pytest.raises(TransformersIncompatibilityError, match="new_segment_ids"):
        check_per_token_inputs({"new_segment_ids": torch.zeros(1, 7, dtype=torch.long)}, 7)
    check_per_token_inputs({"image_grid_thw": torch.tensor([[1, 4, 4]]), "attention_mask": torch.ones(1, 7)}, 7)


def test_caches_that_cannot_be_rolled_back_are_refused():
    model = tiny_llama()
    fresh = DynamicCache()
    assert croppable_cache(fresh) is fresh
    assert isinstance(croppable_cache(None), DynamicCache)
    with pytest.raises(ValueError, match="empty cache"):
        croppable_cache(filled_cache(model, 4))
    with pytest.raises(ValueError, match="needs a DynamicCache.*StaticCache"):
        croppable_cache(StaticCache(config=model.config, max_cache_len=16))


def test_generate_with_a_static_cache_is_a_clear_error():
    model = tiny_llama()
    drafter = SelfDrafter.from_target(model, num_layers=1)
    with pytest.raises(ValueError, match="leave cache_implementation unset"):
        speculative_generate(model, drafter, **text_inputs(0), max_new_tokens=4, do_sample=False,
                             cache_implementation="static")
