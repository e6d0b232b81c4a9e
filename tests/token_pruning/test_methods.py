"""Each method on its own (exact selections), and exactly K visual tokens per image in the LM."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.token_pruning import METHODS, ImageTokens, VisualTokenPruningConfig, last_kept_positions
from genaccel.token_pruning.methods.base import top_k_sorted
from genaccel.token_pruning.methods.visionzip import CONTEXTUAL_SHARE

from pruning_targets import IMAGE_TOKEN, METHOD_NAMES, TARGETS


def tokens(features, vision_scores=None, text_attention=None, seed=0):
    return ImageTokens(features=features, vision_scores=vision_scores, text_attention=text_attention, image_index=0,
                       generator=torch.Generator().manual_seed(seed))


def method(name, **options):
    return METHODS[name](VisualTokenPruningConfig(keep=1, method=name, **options))


def test_top_k_sorted_keeps_index_order_and_breaks_ties_low_first():
    assert top_k_sorted(torch.tensor([0.1, 0.9, 0.5, 0.9, 0.2]), 3).tolist() == [1, 2, 3]
    assert top_k_sorted(torch.tensor([1.0, 1.0, 1.0, 1.0]), 2).tolist() == [0, 1]


def test_divprune_takes_one_token_per_cluster_and_never_repeats():
    directions = torch.eye(3) * 10
    features = torch.cat([directions[i] + 0.01 * torch.randn(5, 3, generator=torch.Generator().manual_seed(i))
                          for i in range(3)])  # 3 clusters of 5 tokens
    kept = method("divprune").select(tokens(features), 3).kept
    assert sorted(int(k) // 5 for k in kept) == [0, 1, 2] and kept.tolist() == sorted(kept.tolist())
    same = method("divprune").select(tokens(torch.ones(6, 4)), 4).kept  # all distances 0
    assert same.tolist() == sorted(set(same.tolist())) and len(same) == 4


def test_visionzip_dominant_by_score_plus_merged_contextual_tokens():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(40, 8, generator=generator)
    scores = torch.rand(1, 40, generator=generator)
    keep = 16
    contextual = int(keep * CONTEXTUAL_SHARE + 0.5)  # 16 * 10 / 64 = 2.5 -> 3 (half up)
    selection = method("visionzip").select(tokens(features, vision_scores=scores), keep)
    kept = selection.kept
    assert kept.shape == (keep,) and kept.tolist() == sorted(set(kept.tolist()))
    dominant = set(scores[0].topk(keep - contextual).indices.tolist())
    assert dominant <= set(kept.tolist())
    is_dominant = torch.tensor([int(k) in dominant for k in kept])
    assert torch.equal(selection.features[is_dominant], features[kept[is_dominant]])  # dominant tokens as they are
    # contextual tokens: means of disjoint groups covering every other token exactly once
    merged = selection.features[~is_dominant]
    assert merged.shape[0] == contextual == 3
    rest = [i for i in range(40) if i not in dominant]
    targets = kept[~is_dominant].tolist()
    unit = torch.nn.functional.normalize(features, dim=-1)
    groups = {t: [t] for t in targets}
    for i in rest:
        if i not in groups:
            groups[targets[int((unit[i] @ unit[targets].T).argmax())]].append(i)
    for slot, target in enumerate(targets):
        torch.testing.assert_close(merged[slot], features[groups[target]].mean(dim=0))


def test_random_is_seeded_and_cls_and_fastv_take_top_scores():
    features = torch.randn(30, 4)
    first = method("random").select(tokens(features, seed=3), 10).kept
    assert torch.equal(first, method("random").select(tokens(features, seed=3), 10).kept)
    assert not torch.equal(first, method("random").select(tokens(features, seed=4), 10).kept)
    assert first.tolist() == sorted(set(first.tolist()))
    scores = torch.rand(3, 30)
    assert torch.equal(method("cls").select(tokens(features, vision_scores=scores), 7).kept,
                       scores.mean(dim=0).topk(7).indices.sort().values)
    attention = torch.rand(30)
    assert torch.equal(method("fastv").select(tokens(features, text_attention=attention), 7).kept,
                       attention.topk(7).indices.sort().values)


class LayerInputs:
    """Hidden-state lengths and position ids the given decoder layer receives."""

    def __init__(self, layer):
        self.lengths, self.positions = [], []
        self.handle = layer.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.lengths.append(args[0].shape[1])
        self.positions.append(kwargs.get("position_ids"))


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method_name", METHOD_NAMES)
def test_exactly_k_visual_tokens_per_image_reach_the_language_model(target, method_name):
    build, single, batch = TARGETS[target]
    model = build()
    layers = model.get_decoder().layers
    for inputs in (single(), batch()):
        visual = inputs["input_ids"] == IMAGE_TOKEN
        counts = visual.sum(dim=1)
        for keep in (3, 0.25):
            config = VisualTokenPruningConfig(keep=keep, method=method_name, layer=2)
            expected = torch.tensor([config.tokens_to_keep(int(n)) for n in counts])
            # the first layer without the dropped tokens: 0 before the LM, `layer` for fastv; and the one after
            first = config.layer if method_name == "fastv" else 0
            with genaccel.applied(model, config):  # recorders after apply: they see what the layers see
                before, at, after = (LayerInputs(layers[i]) for i in (max(first - 1, 0), first, first + 1))
                model.generate(**inputs, max_new_tokens=3, do_sample=False)
                kept, real = last_kept_positions(model)
            for recorder in (before, at, after):
                recorder.handle.remove()
            length = inputs["input_ids"].shape[1]
            assert torch.equal((visual.gather(1, kept) & real).sum(dim=1), expected)
            assert at.lengths[0] == after.lengths[0] == kept.shape[1] < length
            assert before.lengths[0] == (length if method_name == "fastv" else kept.shape[1])
            assert at.lengths[1:] == after.lengths[1:] == [1, 1]  # decode steps
