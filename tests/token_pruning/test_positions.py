"""Pruning with an explicit keep-set equals the full model with those tokens masked out of attention
(same position ids / rotary / M-RoPE), in the prefill and in every greedy decode step."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.token_pruning import METHODS, PruningMethod, Selection, VisualTokenPruningConfig, register_method
from genaccel.token_pruning import last_kept_positions
from genaccel.speculative.transformers_compat import cache_keyword, returned_cache

from pruning_targets import IMAGE_TOKEN, TARGETS

STEPS = 8


class EveryOtherBeforeLM(PruningMethod):
    """Test method: keeps visual tokens 1, 3, 5, ... of each image (the first `keep` of them)."""

    name = "test-every-other"

    def select(self, tokens, keep):
        return Selection(kept=torch.arange(1, tokens.features.shape[0], 2)[:keep])


class EveryOtherInLM(EveryOtherBeforeLM):
    name = "test-every-other-in-lm"
    stage = "in_lm"


@pytest.fixture(scope="module", autouse=True)
def fixed_methods():
    for method in (EveryOtherBeforeLM, EveryOtherInLM):
        register_method(method)
    yield
    for method in (EveryOtherBeforeLM, EveryOtherInLM):
        del METHODS[method.name]


def dropped_columns(inputs: dict) -> torch.Tensor:
    """(B, L) True at the visual tokens EveryOther drops (even indices within each image; one image per row)."""
    visual = inputs["input_ids"] == IMAGE_TOKEN
    rank = visual.long().cumsum(dim=1) - 1
    return visual & (rank % 2 == 0)


def full_positions(model, inputs: dict) -> torch.Tensor:
    """The unpruned model's position ids of the prompt: (B, L), or Qwen's (3, B, L) M-RoPE ids."""
    if "image_grid_thw" in inputs:
        positions, _ = model.model.get_rope_index(inputs["input_ids"], image_grid_thw=inputs["image_grid_thw"],
                                                  attention_mask=inputs["attention_mask"],
                                                  mm_token_type_ids=inputs["mm_token_type_ids"])
        return positions
    mask = inputs["attention_mask"]
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def extend(positions: torch.Tensor) -> torch.Tensor:
    return torch.cat([positions, positions[..., -1:] + 1], dim=-1)


class MaskColumnsFromLayer:
    """Reference for in-LM pruning: from layer k on, the dropped key columns are masked out (no cache)."""

    def __init__(self, model, layer: int):
        self.dropped = None
        self.handles = [model.get_decoder().layers[index].register_forward_pre_hook(self.mask, with_kwargs=True)
                        for index in range(layer, len(model.get_decoder().layers))]

    def mask(self, module, args, kwargs):
        hidden = args[0]
        length = hidden.shape[1]
        allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
        padding = kwargs["attention_mask"]  # the model's own 4-D mask when there is padding
        if padding is not None:
            allowed = allowed & padding.bool()
        dropped = torch.nn.functional.pad(self.dropped, (0, length - self.dropped.shape[1]))
        return args, {**kwargs, "attention_mask": allowed & ~dropped[:, None, None, :]}

    def close(self):
        for handle in self.handles:
            handle.remove()


def reference_run(model, inputs: dict, dropped: torch.Tensor, in_lm_layer: int | None):
    """Prefill logits (B, L, V) and STEPS greedy tokens of the full model with `dropped` masked out."""
    positions = full_positions(model, inputs)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask")}
    masking = MaskColumnsFromLayer(model, in_lm_layer) if in_lm_layer is not None else None
    tokens, prefill = [], None
    try:
        for _ in range(STEPS):
            if masking is not None:
                masking.dropped = dropped
                attention = mask
            else:
                attention = mask * ~torch.nn.functional.pad(dropped, (0, ids.shape[1] - dropped.shape[1]))
            extra_now = dict(extra)
            if "mm_token_type_ids" in extra_now:
                extra_now["mm_token_type_ids"] = torch.nn.functional.pad(
                    extra["mm_token_type_ids"], (0, ids.shape[1] - extra["mm_token_type_ids"].shape[1]))
            logits = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False,
                           **extra_now).logits
            prefill = logits if prefill is None else prefill
            # a generated image token would be read as an image slot in the next forward: never pick it
            token = logits[:, -1].index_fill(-1, torch.tensor([IMAGE_TOKEN]), float("-inf")).argmax(dim=-1,
                                                                                                      keepdim=True)
            tokens.append(token)
            ids = torch.cat([ids, token], dim=1)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            positions = extend(positions)
    finally:
        if masking is not None:
            masking.close()
    return prefill, torch.cat(tokens, dim=1)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("stage", ["before_lm", "in_lm"])
def test_explicit_keep_set_equals_masked_attention_on_the_full_model(target, stage):
    build, single, batch = TARGETS[target]
    model = build()
    inputs = batch() if target == "llava_next" else single()  # NeXT: two image sizes, left padding
    dropped = dropped_columns(inputs)
    counts = (inputs["input_ids"] == IMAGE_TOKEN).sum(dim=1)
    keep = 0.5
    method = EveryOtherBeforeLM.name if stage == "before_lm" else EveryOtherInLM.name
    reference_prefill, reference_tokens = reference_run(model, inputs, dropped, 2 if stage == "in_lm" else None)

    genaccel.apply(model, VisualTokenPruningConfig(keep=keep, method=method, layer=2))
    try:
        logits = model(**inputs).logits
        kept, not_filler = last_kept_positions(model)
        assert not bool((not_filler & dropped.gather(1, kept)).any())  # the odd tokens of each image, as asked
        real = inputs["attention_mask"].gather(1, kept).bool() & not_filler  # not padding, not filler
        kept_visual = (inputs["input_ids"].gather(1, kept) == IMAGE_TOKEN) & real
        assert torch.equal(kept_visual.sum(dim=1), counts // 2)
        assert real.sum() > counts.sum() // 2  # text tokens too
        expected = reference_prefill.gather(1, kept[..., None].expand(-1, -1, logits.shape[-1]))
        torch.testing.assert_close(logits[real], expected[real], rtol=1e-4, atol=1e-5)
        generated = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, suppress_tokens=[IMAGE_TOKEN])
        assert torch.equal(generated[:, inputs["input_ids"].shape[1]:], reference_tokens)
    finally:
        genaccel.remove(model)


@pytest.mark.parametrize("target", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_kept_tokens_keep_their_full_sequence_m_rope_positions(target):
    build, single, _ = TARGETS[target]
    model = build()
    inputs = single()
    seen = []  # the (3, B, L) M-RoPE ids the language model's rotary embedding receives
    handle = model.get_decoder().rotary_emb.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    full_prefill, full_decode = seen[0], seen[1:]
    seen.clear()
    genaccel.apply(model, VisualTokenPruningConfig(keep=5, method="divprune"))
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    kept, _ = last_kept_positions(model)
    genaccel.remove(model)
    handle.remove()
    assert kept.shape[1] == inputs["input_ids"].shape[1] - 16 + 5
    assert torch.equal(seen[0], full_prefill[..., kept[0]])
    assert all(torch.equal(pruned, full) for pruned, full in zip(seen[1:], full_decode))


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", ["divprune", "fastv"])
def test_decode_step_without_position_ids_or_mask_continues_the_unpruned_positions(target, method):
    """A hand-written decode loop (cache, no mask, no positions) equals generate after a pruned prefill."""
    build, single, _ = TARGETS[target]
    model = build()
    inputs = single()
    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method=method))
    try:
        expected = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        out = model(**inputs, use_cache=True)
        tokens = [out.logits[:, -1].argmax(dim=-1, keepdim=True)]
        cache = returned_cache(out)
        for _ in range(3):
            out = model(input_ids=tokens[-1], use_cache=True, **{cache_keyword(model): cache})
            cache = returned_cache(out)
            tokens.append(out.logits[:, -1].argmax(dim=-1, keepdim=True))
    finally:
        genaccel.remove(model)
    assert torch.equal(torch.cat(tokens, dim=1), expected[:, inputs["input_ids"].shape[1]:])
