"""Bad configs and bad calls get one-line errors that say what is wrong and what is accepted."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.token_pruning import PruningInputError, VisualTokenPruningConfig

from pruning_targets import llava_inputs, tiny_llava
from tiny_targets import tiny_llama


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("keep", [0, -3, 0.0, -0.5, 1.5, True, "half", None])
def test_keep_must_be_a_positive_count_or_a_fraction(keep):
    with pytest.raises(ValueError) as info:
        VisualTokenPruningConfig(keep=keep, method="divprune")
    assert "keep must be a count >= 1 (int) or a fraction in (0, 1] (float)" in one_line(info)


def test_unknown_method_lists_the_accepted_ones():
    with pytest.raises(ValueError) as info:
        VisualTokenPruningConfig(keep=0.5, method="sparsevlm")
    assert one_line(info) == ("unknown visual-token pruning method 'sparsevlm'; accepted: "
                              "cls, divprune, fastv, random, visionzip")


def test_fastv_layer_is_checked_against_the_model():
    with pytest.raises(ValueError, match="layer"):
        VisualTokenPruningConfig(keep=4, method="fastv", layer=0)
    model = tiny_llava()  # 4 language-model layers
    with pytest.raises(ValueError) as info:
        genaccel.apply(model, VisualTokenPruningConfig(keep=4, method="fastv", layer=4))
    assert "must be in 1..3 for this model's 4 language-model layers, got 4" in one_line(info)
    assert not genaccel.is_applied(model)


def test_unsupported_model_class_names_the_supported_ones():
    with pytest.raises(TypeError) as info:
        genaccel.apply(tiny_llama(), VisualTokenPruningConfig(keep=4, method="random"))
    assert one_line(info) == ("visual-token pruning supports LlavaNextForConditionalGeneration, "
                              "LlavaForConditionalGeneration, Qwen2_5_VLForConditionalGeneration, "
                              "Qwen2VLForConditionalGeneration; got LlamaForCausalLM")


def test_a_count_above_the_images_tokens_fails_at_call_time():
    model = tiny_llava()  # 16 visual tokens per image
    genaccel.apply(model, VisualTokenPruningConfig(keep=17, method="divprune"))
    with pytest.raises(PruningInputError) as info:
        model.generate(**llava_inputs(), max_new_tokens=2, do_sample=False)
    assert one_line(info) == ("VisualTokenPruningConfig(keep=17) asks for 17 visual tokens but image 0 has 16; "
                              "use a count <= 16 or a fraction in (0, 1]")
    genaccel.remove(model)


def test_applying_twice_is_an_error_and_remove_needs_a_patch():
    model = tiny_llava()
    with pytest.raises(ValueError) as info:
        genaccel.remove(model)
    assert one_line(info) == "genaccel.remove: this LlavaForConditionalGeneration has no visual-token pruning applied"
    genaccel.apply(model, VisualTokenPruningConfig(keep=0.5, method="divprune"))
    with pytest.raises(ValueError) as info:
        genaccel.apply(model, VisualTokenPruningConfig(keep=4, method="random"))
    assert one_line(info) == ("this LlavaForConditionalGeneration already has visual-token pruning (divprune:0.5); "
                              "call genaccel.remove first")
    genaccel.remove(model)
    assert not genaccel.is_applied(model)


def test_applied_context_manager_and_is_applied():
    model = tiny_llava()
    inputs = llava_inputs()
    reference = model(**inputs).logits
    with genaccel.applied(model, VisualTokenPruningConfig(keep=4, method="random")) as patched:
        assert patched is model and genaccel.is_applied(model)
        assert model(**inputs).logits.shape[1] == reference.shape[1] - 12
    assert not genaccel.is_applied(model)
    assert torch.equal(model(**inputs).logits, reference)


def test_a_config_of_another_type_is_refused():
    with pytest.raises(TypeError) as info:
        genaccel.apply(tiny_llava(), {"keep": 4})
    assert one_line(info) == ("config must be one of genaccel.VisualTokenPruningConfig, genaccel.ProxyAttentionConfig, "
                              "genaccel.WindowAttentionConfig, genaccel.SparsityPlan, got dict")
