"""Greedy speculative decoding emits exactly what `model.generate` emits, for every drafter and target."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from genaccel.speculative import FlashDrafter, SelfDrafter, speculative_decoding, speculative_generate
from genaccel.speculative.transformers_compat import cache_keyword

from tiny_targets import TARGETS, text_inputs, tiny_llama, tiny_llava, llava_inputs



def drafters(model):
    flash_scrambled = FlashDrafter.from_target(model, num_queries=4, draft_len=5, context_window=6, seed=3)
    with torch.no_grad():  # a very different (wrong) draft head: losslessness must not depend on quality
        for parameter in flash_scrambled.head.parameters():
            parameter.mul_(25.0)
    return {
        "self-pool": SelfDrafter.from_target(model, num_layers=2, visual_tokens=3, visual_compression="pool"),
        "self-norm": SelfDrafter.from_target(model, num_layers=1, visual_tokens=2, visual_compression="norm",
                                            draft_len=6),
        "self-fixed-length": SelfDrafter.from_target(model, num_layers=3, adaptive=False, draft_len=3),
        "flash-untrained": FlashDrafter.from_target(model, num_queries=4, draft_len=4, context_window=4),
        "flash-scrambled": flash_scrambled,
    }


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_greedy_output_is_identical_to_generate(target):
    build, make_inputs = TARGETS[target]
    model = build()
    for seed in (0, 1):
        inputs = make_inputs(seed)
        reference = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        for name, drafter in drafters(model).items():
            out = speculative_generate(model, drafter, **inputs, max_new_tokens=24, do_sample=False)
            assert torch.equal(out.sequences, reference), f"{target}/{name}/seed {seed}"
            assert out.num_new_tokens == 24
            assert 1.0 <= out.acceptance_length <= 24.0
            assert out.num_new_tokens == out.num_target_forwards + out.num_accepted  # one target token per pass


def test_a_perfect_drafter_reaches_full_acceptance():
    """The target as its own drafter (all layers, full visual view) is always right: k + 1 per pass."""
    model = tiny_llava()
    inputs = llava_inputs()
    drafter = SelfDrafter.from_target(model, num_layers=4, visual_tokens=10_000, draft_len=4, adaptive=False)
    out = speculative_generate(model, drafter, **inputs, max_new_tokens=21, do_sample=False)
    assert torch.equal(out.sequences, model.generate(**inputs, max_new_tokens=21, do_sample=False))
    # prefill emits 1 token, then 4 passes of 4 accepted drafts + 1 bonus token
    assert out.num_target_forwards == 5
    assert out.acceptance_length == pytest.approx(21 / 5)
    assert out.num_accepted == out.num_drafted == 16


def test_custom_generate_callable_path_matches():
    model = tiny_llava()
    inputs = llava_inputs(2)
    drafter = SelfDrafter.from_target(model, num_layers=2)
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False, custom_generate=speculative_decoding,
                         drafter=drafter)
    assert torch.equal(out.sequences, model.generate(**inputs, max_new_tokens=16, do_sample=False))


def test_cache_is_rolled_back_over_a_long_generation():
    model = tiny_llama(seed=5)
    inputs = text_inputs(3)
    reference = model.generate(**inputs, max_new_tokens=300, do_sample=False)
    for drafter in (FlashDrafter.from_target(model, num_queries=2, draft_len=4, context_window=8),
                    SelfDrafter.from_target(model, num_layers=1, draft_len=5)):
        cache = DynamicCache()
        out = speculative_generate(model, drafter, **inputs, max_new_tokens=300, do_sample=False,
                                   **{cache_keyword(model): cache})
        assert torch.equal(out.sequences, reference)
        assert out.num_drafted > out.num_accepted  # rejections happened, so the cache was cropped
        assert cache.get_seq_length() == out.sequences.shape[1] - 1  # every emitted token but the last


@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 5, 11])
def test_max_new_tokens_is_exact(max_new_tokens):
    model = tiny_llava()
    inputs = llava_inputs(1)
    drafter = SelfDrafter.from_target(model, num_layers=4, visual_tokens=10_000, draft_len=4, adaptive=False)
    out = speculative_generate(model, drafter, **inputs, max_new_tokens=max_new_tokens, do_sample=False)
    reference = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + max_new_tokens
    assert torch.equal(out.sequences, reference)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_stops_at_eos_exactly_like_generate(target):
    build, make_inputs = TARGETS[target]
    inputs = make_inputs(0)
    free_run = build().generate(**inputs, max_new_tokens=20, do_sample=False)
    prompt_length = inputs["input_ids"].shape[1]
    eos = int(free_run[0, prompt_length + 6])  # a token the target emits 7th: make it the EOS
    model = build(eos=eos)
    reference = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    assert reference[0, -1].item() == eos and reference.shape[1] < free_run.shape[1]
    for drafter in (SelfDrafter.from_target(model, num_layers=4, visual_tokens=10_000, draft_len=4, adaptive=False),
                    FlashDrafter.from_target(model, num_queries=2, draft_len=3, context_window=4)):
        out = speculative_generate(model, drafter, **inputs, max_new_tokens=20, do_sample=False)
        assert torch.equal(out.sequences, reference)


def test_drafts_after_the_eos_are_not_counted_as_accepted():
    """A perfect drafter (k=4, always right) whose round stops on a draft EOS: the drafts after it are
    neither emitted nor counted as accepted."""
    inputs = llava_inputs(0)
    prompt_length = inputs["input_ids"].shape[1]
    new = tiny_llava().generate(**inputs, max_new_tokens=20, do_sample=False)[0, prompt_length:].tolist()
    # the n-th new token (1-based) as EOS: prefill emits token 1, each round 5 (4 drafts + the target's);
    # n - 1 = 5 (r - 1) + j with j in 1..3 is the j-th draft of round r, with 4 - j drafts after it
    n = next(n for n in range(7, 20) if (n - 1) % 5 in (1, 2, 3) and new[n - 1] not in new[:n - 1])
    rounds, j = (n - 2) // 5 + 1, (n - 1) % 5
    model = tiny_llava(eos=new[n - 1])
    drafter = SelfDrafter.from_target(model, num_layers=4, visual_tokens=10_000, draft_len=4, adaptive=False)
    out = speculative_generate(model, drafter, **inputs, max_new_tokens=40, do_sample=False)  # no budget cap
    assert torch.equal(out.sequences, model.generate(**inputs, max_new_tokens=40, do_sample=False))
    assert (out.num_new_tokens, out.num_target_forwards, out.num_drafted) == (n, 1 + rounds, 4 * rounds)
    assert out.num_accepted == 4 * (rounds - 1) + j
    assert out.acceptance_rate == out.num_accepted / (4 * rounds)
