"""The transformers compatibility layer: each version quirk it papers over, checked on the installed release."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, StaticCache

from genaccel.speculative import SelfDrafter, speculative_generate
from genaccel.speculative.transformers_compat import (
    TransformersIncompatibilityError, cache_keyword, check_per_token_inputs, croppable_cache, drop_last_tokens,
    NO_LIMIT, exact_draft_limit, extend_per_token_inputs, use_given_cache)

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


def test_use_cache_false_has_its_own_message():
    model = tiny_llama()
    drafter = SelfDrafter.from_target(model, num_layers=1)
    with pytest.raises(ValueError, match="use_cache=False is not supported") as error:
        speculative_generate(model, drafter, **text_inputs(0), max_new_tokens=4, do_sample=False, use_cache=False)
    assert "cache_implementation" not in str(error.value)


def test_draft_limits_of_rope_variants_that_depend_on_the_forward_length():
    from transformers import LlamaConfig, LlamaForCausalLM

    def model_with(rope: dict, **config) -> LlamaForCausalLM:
        return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, rope_parameters=rope, **config))

    plain = tiny_llama()
    assert exact_draft_limit(plain, 10) == NO_LIMIT
    longrope = model_with(dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 4,
                               long_factor=[2.0] * 4, original_max_position_embeddings=16), max_position_embeddings=64)
    # a forward over k + 1 tokens at length L reaches length L + k: it may not pass 16, beyond 16 anything goes
    assert [exact_draft_limit(longrope, length) for length in (10, 15, 16, 17, 40)] == [6, 1, 0, NO_LIMIT, NO_LIMIT]
    dynamic = model_with(dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0), max_position_embeddings=16)
    # forwards stay below 16; from there on one token per pass
    assert [exact_draft_limit(dynamic, length) for length in (10, 14, 15, 16, 30)] == [5, 1, 0, 0, 0]


def test_a_dropped_cache_is_replaced_by_a_fresh_one_of_ours():
    model = tiny_llama()
    keyword = cache_keyword(model)
    cache = filled_cache(model, 4)
    inputs = {"input_ids": torch.zeros(1, 7, dtype=torch.long), keyword: None}
    fresh = use_given_cache(model, inputs, cache, 7)
    assert fresh is not cache and fresh.get_seq_length() == 0 and inputs[keyword] is fresh
    empty = DynamicCache()
    assert use_given_cache(model, {"input_ids": torch.zeros(1, 7, dtype=torch.long)}, empty, 7) is empty
    assert use_given_cache(model, {"input_ids": torch.zeros(1, 1, dtype=torch.long), keyword: cache}, cache, 7) is cache
    with pytest.raises(TransformersIncompatibilityError, match="without feeding the whole sequence"):
        use_given_cache(model, {"input_ids": torch.zeros(1, 1, dtype=torch.long), keyword: None}, cache, 7)
    with pytest.raises(TransformersIncompatibilityError, match="replaced the cache with a DynamicCache"):
        use_given_cache(model, {"input_ids": torch.zeros(1, 7, dtype=torch.long), keyword: DynamicCache()}, cache, 7)
