"""Batches (same K per image in every row) and speculative decoding over a pruned target."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.speculative import SelfDrafter, speculative_generate
from genaccel.token_pruning import VisualTokenPruningConfig

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
    with genaccel.applied(model, VisualTokenPruningConfig(keep=0.25, method=method)):
        for seed in (0, 1):
            inputs = single(seed)
            expected = model.generate(**inputs, max_new_tokens=24, do_sample=False)
            out = speculative_generate(model, SelfDrafter.from_target(model), **inputs, max_new_tokens=24,
                                       do_sample=False)
            assert torch.equal(out.sequences, expected), (method, seed)
            assert out.num_target_forwards < 24  # drafts were accepted, so the cache was cropped and reused
