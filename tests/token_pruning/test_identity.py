"""keep >= all visual tokens is the original model token for token; remove restores it bitwise."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.token_pruning import VisualTokenPruningConfig

from pruning_targets import IMAGE_TOKEN, METHOD_NAMES, TARGETS


def hooks_and_attributes(model):
    return {name: (len(module._forward_hooks), len(module._forward_pre_hooks), sorted(module.__dict__))
            for name, module in model.named_modules()} | {"": sorted(model.__dict__)}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_keeping_every_visual_token_is_the_original_model(target):
    build, single, batch = TARGETS[target]
    model = build()
    for inputs in (single(), batch()):
        reference_logits = model(**inputs).logits
        reference = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        counts = (inputs["input_ids"] == IMAGE_TOKEN).sum(dim=1)
        whole_count = int(counts.min()) if target != "llava_next" else None  # NeXT images differ in size
        for method in METHOD_NAMES:
            for keep in (1.0, whole_count) if whole_count is not None and counts.eq(counts[0]).all() else (1.0,):
                with genaccel.applied(model, VisualTokenPruningConfig(keep=keep, method=method)):
                    assert torch.equal(model(**inputs).logits, reference_logits), (method, keep)
                    assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False), reference), \
                        (method, keep)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", ["fastv", "visionzip"])
def test_remove_restores_the_model_bitwise(target, method):
    build, single, _ = TARGETS[target]
    model = build()
    inputs = single()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    reference_logits = model(**inputs).logits
    reference = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    before = hooks_and_attributes(model)  # after a forward: transformers adds its own output-capture hooks

    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method=method))
    assert "get_image_features" in model.model.__dict__
    pruned = model(**inputs).logits
    assert pruned.shape[1] < reference_logits.shape[1]
    model.generate(**inputs, max_new_tokens=8, do_sample=False)
    genaccel.remove(model)

    assert hooks_and_attributes(model) == before
    assert "get_image_features" not in model.model.__dict__
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[name], state[name]) for name in state)
    assert torch.equal(model(**inputs).logits, reference_logits)
    assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False), reference)
