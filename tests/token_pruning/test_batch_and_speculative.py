"""Batches (same K per image in every row) and speculative decoding over a pruned target."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.speculative import FlashDrafter, SelfDrafter, speculative_generate
from genaccel.token_pruning import VisualTokenPruningConfig, last_kept_positions

from pruning_targets import METHOD_NAMES, TARGETS


def row_inputs(inputs: dict, row: int) -> dict:
    """Row `row` of a batch on its own, without its left padding."""
    real = inputs["attention_mask"][row].bool()
    single = {"input_ids": inputs["input_ids"][row:row + 1, real],
              "attention_mask": inputs["attention_mask"][row:row + 1, real]}
    if "image_grid_thw" in inputs:  # Qwen: patches of all images concatenated
        patches = inputs["image_grid_thw"].prod(-1).tolist()
        start = sum(patches[:row])
        single["pixel_values"] = inputs["pixel_values"][start:start + patches[row]]
        single["image_grid_thw"] = inputs["image_grid_thw"][row:row + 1]
        single["mm_token_type_ids"] = inputs["mm_token_type_ids"][row:row + 1, real]
    else:
        single["pixel_values"] = inputs["pixel_values"][row:row + 1]
        if "image_sizes" in inputs:
            single["image_sizes"] = inputs["image_sizes"][row:row + 1]
    return single


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_a_batch_generates_what_each_row_generates_alone(target, method):
    build, _, batch = TARGETS[target]
    model = build()
    inputs = batch()
    with genaccel.applied(model, VisualTokenPruningConfig(keep=0.5, method=method)):
        together = model.generate(**inputs, max_new_tokens=8, do_sample=False)[:, -8:]
        alone = torch.cat([model.generate(**row_inputs(inputs, row), max_new_tokens=8, do_sample=False)[:, -8:]
                           for row in range(inputs["input_ids"].shape[0])])
    assert torch.equal(together, alone)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", ["fastv", "divprune", "visionzip"])
def test_speculative_decoding_over_a_pruned_target_equals_its_own_greedy_output(target, method):
    build, single, _ = TARGETS[target]
    model = build()
    forwards = 0
    with genaccel.applied(model, VisualTokenPruningConfig(keep=0.25, method=method)):
        for seed in (0, 1, 2):
            inputs = single(seed)
            expected = model.generate(**inputs, max_new_tokens=24, do_sample=False)
            out = speculative_generate(model, SelfDrafter.from_target(model), **inputs, max_new_tokens=24,
                                       do_sample=False)
            assert torch.equal(out.sequences, expected), (method, seed)
            forwards += out.num_target_forwards
    assert forwards < 3 * 24  # some drafts were accepted, so the cache was cropped and reused


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", ["fastv", "visionzip"])  # pruned inside the LM, before it
def test_flash_drafter_over_a_pruned_target_reads_the_kept_positions_and_is_lossless(target, method):
    build, single, _ = TARGETS[target]
    model = build()
    drafter = FlashDrafter.from_target(model, num_queries=8, context_window=4)
    inputs = single()
    prompt = inputs["input_ids"].shape[1]
    with genaccel.applied(model, VisualTokenPruningConfig(keep=0.25, method=method)):
        expected = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        out = speculative_generate(model, drafter, **inputs, max_new_tokens=12, do_sample=False)
        kept, _ = last_kept_positions(model)
    assert torch.equal(out.sequences, expected)
    # the drafter's hidden states sit at the kept prompt positions, then at every generated one
    positions = drafter._positions
    assert torch.equal(positions[:kept.shape[1]], kept[0])
    assert torch.equal(positions[kept.shape[1]:], torch.arange(prompt, prompt + positions.shape[0] - kept.shape[1]))
    assert positions.shape[0] > kept.shape[1]
