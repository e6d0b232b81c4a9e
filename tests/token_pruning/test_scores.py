"""The attention scores the methods read equal the ones eager attention (or a direct computation) gives,
and map onto the right LM tokens."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.token_pruning import VisualTokenPruningConfig
from genaccel.token_pruning.families import LlavaNextFamily, Qwen2_5_VLFamily

from pruning_targets import TARGETS, qwen_large_inputs, tiny_llava_next, tiny_qwen2_5_vl_windows


def eager_copy(build):
    model = build()
    model.set_attn_implementation("eager")
    return model


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fastv_scores_equal_eager_attention_of_the_last_prompt_token(target):
    build, single, batch = TARGETS[target]
    model = build()  # sdpa
    reference = eager_copy(build)
    for inputs in (single(), batch()):
        genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method="fastv", layer=2))
        model(**inputs)
        scores = model._genaccel_token_pruning.last_text_attention  # (B, L)
        genaccel.remove(model)
        attentions = reference(**inputs, output_attentions=True).attentions[1]  # layer k - 1 = 1: (B, H, L, L)
        torch.testing.assert_close(scores, attentions[:, :, -1].mean(dim=1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target", ["llava", "llava_next"])
def test_cls_attention_equals_eager_vision_attention(target):
    build, single, _ = TARGETS[target]
    model = build()
    inputs = single()
    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method="cls"))
    model(**inputs)
    records = model._genaccel_token_pruning.image_records
    genaccel.remove(model)
    reference = eager_copy(build)
    pixel_values = inputs["pixel_values"]
    if target == "llava_next":  # the crops the tower sees
        pixel_values = pixel_values[0]
    attentions = reference.model.vision_tower(pixel_values, output_attentions=True).attentions
    layers = len(attentions)
    cls = torch.stack([a[:, :, 0, 1:].mean(dim=1) for a in attentions[-min(4, layers):]])  # (layers, crops, P)
    if target == "llava":
        torch.testing.assert_close(records[0].scores, cls[:, 0], rtol=1e-4, atol=1e-6)
    else:  # through the packing (checked against the model's own below); newline tokens: -inf
        index = LlavaNextFamily(model).packed_index(inputs["image_sizes"], "default", cls.shape[1], cls.shape[2],
                                                    cls.device)[0]
        expected = cls.reshape(cls.shape[0], -1)[:, index.clamp(min=0)].masked_fill(index[None] < 0, float("-inf"))
        assert int((index < 0).sum()) > 0
        torch.testing.assert_close(records[0].scores, expected, rtol=1e-4, atol=1e-6)


def test_llava_next_packed_index_matches_the_models_own_packing():
    model = tiny_llava_next()
    inputs = TARGETS["llava_next"][2]()  # two images, 3 crops each
    base = model.model
    crops = torch.cat([values[:3] for values in inputs["pixel_values"]])
    hidden = base.vision_tower(crops, output_hidden_states=True).hidden_states[-1][:, 1:]
    features = base.multi_modal_projector(hidden)  # (crops, P, D)
    packed = base.get_image_features(inputs["pixel_values"], inputs["image_sizes"]).pooler_output
    indices = LlavaNextFamily(model).packed_index(inputs["image_sizes"], "default", features.shape[0],
                                                  features.shape[1], features.device)
    flat = features.reshape(-1, features.shape[-1])
    for image, index in zip(packed, indices):
        assert index.shape[0] == image.shape[0]
        torch.testing.assert_close(image[index >= 0], flat[index[index >= 0]])
        assert torch.equal(image[index < 0], base.image_newline.expand(int((index < 0).sum()), -1))


def received_reference(model, inputs, block_index):
    """Attention each patch receives in one vision block, from its input, by a full softmax; (N,) in block order."""
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    attention = model.model.visual.blocks[block_index].attn
    seen = {}
    handle = attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(hidden=args[0], **kwargs), with_kwargs=True)
    model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    handle.remove()
    q, k, _ = attention.qkv(seen["hidden"]).reshape(seen["hidden"].shape[0], 3, attention.num_heads, -1).unbind(1)
    q, k = apply_rotary_pos_emb_vision(q, k, *seen["position_embeddings"])
    bounds = seen["cu_seqlens"].tolist()
    received = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        weights = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]).mul(attention.scaling).softmax(-1)
        received.append(weights.mean(dim=(0, 1)))
    return torch.cat(received)


def test_qwen2_vl_received_attention_per_merged_token():
    build, single, _ = TARGETS["qwen2_vl"]
    model = build()
    inputs = single()
    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method="visionzip"))
    model(**inputs)
    scores = model._genaccel_token_pruning.image_records[0].scores  # (1, 16)
    genaccel.remove(model)
    expected = received_reference(model, inputs, -1).view(-1, 4).mean(dim=1)  # 2 x 2 merged groups
    torch.testing.assert_close(scores[0], expected, rtol=1e-4, atol=1e-7)


def test_qwen2_5_vl_scores_follow_the_mergers_window_order_back_to_the_grid():
    """Windows reorder the patches: the score of LM token j must be that of the window group the merger
    turned into token j (found here by matching the merger's outputs with the image features)."""
    model = tiny_qwen2_5_vl_windows()
    inputs = qwen_large_inputs(grid=(8, 8))  # 16 LM tokens in 2 x 2-token windows
    visual = model.model.visual
    seen = {}
    handle = visual.blocks[-1].register_forward_hook(lambda module, args, output: seen.update(hidden=output))
    features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output[0]
    handle.remove()
    merged_window_order = visual.merger(seen["hidden"])  # (16, D)
    matches = torch.cdist(features, merged_window_order).argmin(dim=1)  # token j <- window group
    order = Qwen2_5_VLFamily(model).patch_order(inputs["image_grid_thw"])
    assert not torch.equal(order, torch.arange(16))  # the windows do reorder
    assert torch.equal(order, matches)

    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method="visionzip"))
    model(**inputs)
    scores = model._genaccel_token_pruning.image_records[0].scores[0]
    genaccel.remove(model)
    window_scores = received_reference(model, inputs, 1).view(-1, 4).mean(dim=1)  # block 1: the full-attention one
    torch.testing.assert_close(scores, window_scores[matches], rtol=1e-4, atol=1e-7)
