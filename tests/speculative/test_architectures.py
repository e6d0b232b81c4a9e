"""Speculative decoding across decoder architectures, on tiny random configs of the installed transformers.

Supported architectures: greedy `speculative_generate` equals the target's own `generate` token for
token, with layer-skip drafters (one layer: many rejections, so the cache is cropped often; all
layers: long accepted runs) and an untrained FLASH head, over enough new tokens to pass every
sliding window (8) and RoPE threshold (16) in the matrix. Refused architectures (state that
cropping cannot roll back) raise `UnsupportedTargetError` before decoding, from both drafters'
constructors and from `speculative_generate`. Architectures missing from the installed release skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import transformers
from transformers import DynamicCache

from genaccel.speculative import FlashDrafter, SelfDrafter, UnsupportedTargetError, speculative_generate
from genaccel.speculative.transformers_compat import (
    DYNAMIC_ROPE_STATELESS_FROM, LONGROPE_SWITCH_RECOMPUTED_FROM, cache_keyword, installed_release)

from tiny_targets import TARGETS, llava_next_inputs, text_inputs, tiny_llama, tiny_llava_next

VOCAB, HIDDEN, WINDOW, NEW_TOKENS = 96, 32, 8, 24  # prompt 9 + 24 new tokens: 4 windows, past position 16

BASE = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=256, bos_token_id=1, eos_token_id=None,
            pad_token_id=0)
# Larger weights than the default 0.02: sharper logits, so a wrong cache or RoPE changes the argmax
# (with 0.02 the Phi-3 long-rope bug did not show in the output).
SHARP = dict(initializer_range=0.5)
LONGROPE = dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 4, long_factor=[4.0, 5.0, 6.0, 7.0],
                original_max_position_embeddings=16)


@dataclass
class Case:
    model_class: str
    config_class: str
    config: dict = field(default_factory=dict)
    base: bool = True  # start from BASE
    drop: tuple = ()  # BASE keys this config does not take
    self_drafter: str | None = None  # a regex: SelfDrafter.from_target refuses this target (FLASH only)
    refused: str | None = None  # regex of the UnsupportedTargetError
    fixed_in: tuple[int, int] | None = None  # older releases decode it wrongly themselves: refused there

    def build(self):
        missing = [name for name in (self.model_class, self.config_class) if not hasattr(transformers, name)]
        if missing:
            pytest.skip(f"{', '.join(missing)} not in transformers {transformers.__version__}")
        config_class = getattr(transformers, self.config_class)
        try:
            base = {key: value for key, value in BASE.items() if key not in self.drop} if self.base else {}
            config = config_class(**{**base, **self.config})
        except Exception as error:  # a kwarg this release's config does not accept or validate
            pytest.skip(f"{self.config_class}(tiny) cannot be built on transformers {transformers.__version__}: "
                        f"{type(error).__name__}: {str(error).splitlines()[0]}")
        torch.manual_seed(0)
        return getattr(transformers, self.model_class)(config).eval()


NO_LAYERS = "SelfDrafter needs a text decoder with `layers`"


def _without_layers(model_class: str, config_class: str, **config) -> Case:
    """A GPT-2-style decoder (blocks under `h` / `blocks`): FLASH only."""
    return Case(model_class, config_class, dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=None, **config),
                base=False, self_drafter=NO_LAYERS)


MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)
CASES = {
    "llama": Case("LlamaForCausalLM", "LlamaConfig"),
    "llama-sharp": Case("LlamaForCausalLM", "LlamaConfig", SHARP),
    "llama-dynamic-ntk": Case("LlamaForCausalLM", "LlamaConfig", dict(
        SHARP, max_position_embeddings=16, rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=4.0)),
        fixed_in=DYNAMIC_ROPE_STATELESS_FROM),
    "llama-yarn": Case("LlamaForCausalLM", "LlamaConfig", dict(SHARP, max_position_embeddings=64, rope_parameters=dict(
        rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=16))),
    "mistral": Case("MistralForCausalLM", "MistralConfig"),
    "mistral-sliding-window": Case("MistralForCausalLM", "MistralConfig", dict(SHARP, sliding_window=WINDOW)),
    "mixtral-sliding-window": Case("MixtralForCausalLM", "MixtralConfig", dict(
        sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2)),
    "ministral": Case("MinistralForCausalLM", "MinistralConfig", dict(sliding_window=WINDOW)),
    "qwen2": Case("Qwen2ForCausalLM", "Qwen2Config"),
    "qwen2-sliding-window": Case("Qwen2ForCausalLM", "Qwen2Config", dict(
        SHARP, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "qwen2-moe": Case("Qwen2MoeForCausalLM", "Qwen2MoeConfig", dict(MOE, shared_expert_intermediate_size=16)),
    "qwen3": Case("Qwen3ForCausalLM", "Qwen3Config"),
    "qwen3-moe": Case("Qwen3MoeForCausalLM", "Qwen3MoeConfig", MOE),
    "gemma": Case("GemmaForCausalLM", "GemmaConfig"),
    "gemma2": Case("Gemma2ForCausalLM", "Gemma2Config", dict(SHARP, sliding_window=WINDOW)),
    "gemma3-text": Case("Gemma3ForCausalLM", "Gemma3TextConfig", dict(SHARP, sliding_window=WINDOW)),
    "phi": Case("PhiForCausalLM", "PhiConfig"),
    "phi3": Case("Phi3ForCausalLM", "Phi3Config"),
    "phi3-sliding-window": Case("Phi3ForCausalLM", "Phi3Config", dict(SHARP, sliding_window=WINDOW)),
    "phi3-longrope": Case("Phi3ForCausalLM", "Phi3Config", dict(
        SHARP, max_position_embeddings=64, original_max_position_embeddings=16, rope_parameters=LONGROPE),
        fixed_in=LONGROPE_SWITCH_RECOMPUTED_FROM),
    "phi3-longrope-sliding-window": Case("Phi3ForCausalLM", "Phi3Config", dict(
        SHARP, max_position_embeddings=64, original_max_position_embeddings=16, rope_parameters=LONGROPE,
        sliding_window=WINDOW), fixed_in=LONGROPE_SWITCH_RECOMPUTED_FROM),
    "olmo": Case("OlmoForCausalLM", "OlmoConfig"),
    "olmo2": Case("Olmo2ForCausalLM", "Olmo2Config"),
    "olmo3-sliding-window": Case("Olmo3ForCausalLM", "Olmo3Config", dict(sliding_window=WINDOW)),
    "cohere": Case("CohereForCausalLM", "CohereConfig"),
    "cohere2-sliding-window": Case("Cohere2ForCausalLM", "Cohere2Config", dict(SHARP, sliding_window=WINDOW)),
    "glm": Case("GlmForCausalLM", "GlmConfig"),
    "glm4": Case("Glm4ForCausalLM", "Glm4Config"),
    "granite": Case("GraniteForCausalLM", "GraniteConfig"),
    "starcoder2-sliding-window": Case("Starcoder2ForCausalLM", "Starcoder2Config", dict(sliding_window=WINDOW)),
    "exaone4-sliding-window": Case("Exaone4ForCausalLM", "Exaone4Config", dict(sliding_window=WINDOW)),
    "smollm3": Case("SmolLM3ForCausalLM", "SmolLM3Config"),
    "gpt-oss-sliding-window": Case("GptOssForCausalLM", "GptOssConfig", dict(
        sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    "deepseek-v3": Case("DeepseekV3ForCausalLM", "DeepseekV3Config", dict(
        n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, first_k_dense_replace=1, kv_lora_rank=16,
        q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, n_group=1, topk_group=1,
        num_key_value_heads=4)),
    # Gemma3n: FLASH only (AltUp streams); 4 layers, the last 2 reusing the first 2's keys and values
    "gemma3n-text": Case("Gemma3nForCausalLM", "Gemma3nTextConfig", dict(
        SHARP, num_hidden_layers=4, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"] * 2,
        num_kv_shared_layers=2, vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=8, laurel_rank=4,
        activation_sparsity_pattern=[0.0] * 4), self_drafter="AltUp"),
    # decoders whose blocks are not under `layers`: FLASH only
    "gpt2": _without_layers("GPT2LMHeadModel", "GPT2Config", n_embd=HIDDEN, n_layer=2, n_head=4),
    "gptj": _without_layers("GPTJForCausalLM", "GPTJConfig", n_embd=HIDDEN, n_layer=2, n_head=4, rotary_dim=4),
    "falcon": _without_layers("FalconForCausalLM", "FalconConfig", hidden_size=HIDDEN, num_hidden_layers=2,
                              num_attention_heads=4),
    "bloom": _without_layers("BloomForCausalLM", "BloomConfig", hidden_size=HIDDEN, n_layer=2, n_head=4),
    "mpt": _without_layers("MptForCausalLM", "MptConfig", d_model=HIDDEN, n_layers=2, n_heads=4,
                           use_cache=True),  # MptConfig defaults to use_cache=False
}

RECURRENT = "cannot be rolled back by cropping"
REFUSED = {
    "mamba": Case("MambaForCausalLM", "MambaConfig", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                                                         state_size=4), base=False, refused=RECURRENT),
    "mamba2": Case("Mamba2ForCausalLM", "Mamba2Config", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                                                            num_heads=4, head_dim=16, n_groups=1, state_size=4),
                   base=False, refused=RECURRENT),
    "falcon-mamba": Case("FalconMambaForCausalLM", "FalconMambaConfig", dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, state_size=4), base=False, refused=RECURRENT),
    "jamba": Case("JambaForCausalLM", "JambaConfig", dict(
        attn_layer_period=2, attn_layer_offset=1, num_experts=2, expert_layer_period=2, mamba_d_state=4,
        mamba_dt_rank=4), drop=("head_dim",), refused=RECURRENT),
    "bamba": Case("BambaForCausalLM", "BambaConfig", dict(
        attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1, mamba_d_state=4),
        drop=("head_dim",), refused=RECURRENT),
    "falcon-h1": Case("FalconH1ForCausalLM", "FalconH1Config", dict(
        mamba_n_heads=4, mamba_d_head=16, mamba_d_ssm=64, mamba_n_groups=1, mamba_d_state=4),
        drop=("head_dim",), refused=RECURRENT),
    "recurrent-gemma": Case("RecurrentGemmaForCausalLM", "RecurrentGemmaConfig", dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        lru_width=HIDDEN, attention_window_size=WINDOW), base=False, refused=RECURRENT),
    "lfm2": Case("Lfm2ForCausalLM", "Lfm2Config", dict(layer_types=["conv", "full_attention"]),
                 drop=("head_dim",), refused=RECURRENT),
    "qwen3-next": Case("Qwen3NextForCausalLM", "Qwen3NextConfig", dict(
        MOE, layer_types=["linear_attention", "full_attention"], linear_key_head_dim=8, linear_value_head_dim=8,
        linear_num_key_heads=2, linear_num_value_heads=4, shared_expert_intermediate_size=16), refused=RECURRENT),
    "mllama": Case("MllamaForConditionalGeneration", "MllamaConfig", dict(
        vision_config=dict(hidden_size=HIDDEN, num_hidden_layers=1, num_global_layers=1, attention_heads=4,
                           intermediate_size=64, vision_output_dim=64, image_size=16, patch_size=4,
                           intermediate_layers_indices=[0]),
        text_config={**{key: value for key, value in BASE.items() if key != "head_dim"},
                     "cross_attention_layers": [1]}), base=False, refused="cross-attention"),
}


def _check_identical(model, inputs: dict, drafters: dict[str, Callable]) -> None:
    reference = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert reference.shape[1] == inputs["input_ids"].shape[1] + NEW_TOKENS
    for name, make in drafters.items():
        out = speculative_generate(model, make(), **inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert torch.equal(out.sequences, reference), name
        assert out.num_new_tokens == out.num_target_forwards + out.num_accepted, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_speculative_output_equals_generate(name):
    case = CASES[name]
    model = case.build()
    if case.fixed_in is not None and installed_release() < case.fixed_in:
        with pytest.raises(ValueError, match=r"transformers >= {}\.{}".format(*case.fixed_in)):
            speculative_generate(model, FlashDrafter.from_target(model, num_queries=2), **text_inputs(0),
                                 max_new_tokens=NEW_TOKENS, do_sample=False)
        return
    drafters = {"flash-untrained": lambda: FlashDrafter.from_target(model, num_queries=2, draft_len=4,
                                                                    context_window=4)}
    if case.self_drafter is None:
        drafters["self-1-layer"] = lambda: SelfDrafter.from_target(model, num_layers=1, draft_len=4)
        drafters["self-all-layers"] = lambda: SelfDrafter.from_target(model, num_layers=2, draft_len=4,
                                                                      adaptive=False)
    else:  # refused at construction, naming the model class
        with pytest.raises((TypeError, UnsupportedTargetError), match=f"{case.self_drafter}.*{case.model_class}|"
                                                                      f"{case.model_class}.*{case.self_drafter}"):
            SelfDrafter.from_target(model)
    _check_identical(model, text_inputs(0), drafters)


def _siglip(**extra):
    return transformers.SiglipVisionConfig(image_size=16, patch_size=4, hidden_size=HIDDEN, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=4, **extra)


def _image_prompt(image: list[int]) -> dict:
    """Text, then the image placeholder tokens, then text; a 16 x 16 random image."""
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 80, (1, 5), generator=generator)
    input_ids = torch.cat([text[:, :1], torch.tensor([image]), text[:, 1:]], dim=1)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(1, 3, 16, 16, generator=generator)}


def tiny_gemma3_vlm():
    """Gemma 3 with a SigLIP tower: sliding-window text layers, 4 pooled image tokens between BOI and EOI."""
    config = transformers.Gemma3Config(vision_config=_siglip(), text_config=dict(BASE, **SHARP, sliding_window=WINDOW),
                                       mm_tokens_per_image=4, image_token_index=90, boi_token_index=91,
                                       eoi_token_index=92)
    torch.manual_seed(0)
    return transformers.Gemma3ForConditionalGeneration(config).eval(), _image_prompt([91] + [90] * 4 + [92])


def tiny_paligemma():
    """PaliGemma: SigLIP tower, Gemma text model, 16 image tokens, token_type_ids (prefix-LM)."""
    config = transformers.PaliGemmaConfig(vision_config=_siglip(projection_dim=HIDDEN),
                                          text_config=dict(BASE, model_type="gemma"), image_token_index=90,
                                          projection_dim=HIDDEN, hidden_size=HIDDEN)
    torch.manual_seed(0)
    inputs = _image_prompt([90] * 16)
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return transformers.PaliGemmaForConditionalGeneration(config).eval(), inputs


def tiny_idefics3_family(model_class: str, config_class: str):
    """Idefics3 / SmolVLM: SigLIP-style tower, pixel shuffle (scale 2): 4 image tokens per 16 px image."""
    vision = dict(hidden_size=HIDDEN, image_size=16, patch_size=4, num_hidden_layers=1, num_attention_heads=4,
                  intermediate_size=64)
    config = getattr(transformers, config_class)(vision_config=vision, text_config=dict(BASE, model_type="llama"),
                                                 scale_factor=2, image_token_id=90)
    torch.manual_seed(0)
    inputs = _image_prompt([90] * 4)
    inputs["pixel_values"] = inputs["pixel_values"][:, None]  # (batch, images, 3, H, W)
    return getattr(transformers, model_class)(config).eval(), inputs


MULTIMODAL = {name: (lambda build=build, make_inputs=make_inputs: (build(), make_inputs(0)))
              for name, (build, make_inputs) in TARGETS.items()}  # LLaVA, Qwen2-VL, Qwen2.5-VL, Llama (4 layers)
MULTIMODAL.update({
    "llava-next": lambda: (tiny_llava_next(), llava_next_inputs(0)),  # anyres: 3 crops + image newlines
    "gemma3-vlm": tiny_gemma3_vlm, "paligemma": tiny_paligemma,
    "idefics3": lambda: tiny_idefics3_family("Idefics3ForConditionalGeneration", "Idefics3Config"),
    "smolvlm": lambda: tiny_idefics3_family("SmolVLMForConditionalGeneration", "SmolVLMConfig"),
})


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_multimodal_targets_over_a_long_generation(name):
    """Image-text targets with every drafter (the draft's view of the image compressed or not)."""
    try:
        model, inputs = MULTIMODAL[name]()
    except (AttributeError, TypeError, ValueError) as error:  # class absent or config not accepted by this release
        pytest.skip(f"{name} cannot be built on transformers {transformers.__version__}: {type(error).__name__}: "
                    f"{str(error).splitlines()[0]}")
    layers = model.config.get_text_config().num_hidden_layers
    _check_identical(model, inputs, {
        "self-1-layer": lambda: SelfDrafter.from_target(model, num_layers=1, visual_tokens=2),
        "self-all-layers": lambda: SelfDrafter.from_target(model, num_layers=layers, visual_tokens=10_000,
                                                           adaptive=False),
        "flash-untrained": lambda: FlashDrafter.from_target(model, num_queries=2, draft_len=4, context_window=4),
    })


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_architectures_are_refused_up_front(name):
    case = REFUSED[name]
    model = case.build()
    with pytest.raises(UnsupportedTargetError, match=case.refused):
        SelfDrafter.from_target(model)
    with pytest.raises(UnsupportedTargetError, match=case.refused):
        FlashDrafter.from_target(model)
    foreign = SelfDrafter.from_target(tiny_llama(hidden=HIDDEN), num_layers=1)  # same vocabulary and width
    with pytest.raises(UnsupportedTargetError, match=case.refused):
        speculative_generate(model, foreign, **text_inputs(0), max_new_tokens=4, do_sample=False)


def test_the_sliding_window_is_in_effect_and_a_full_cache_keeps_it():
    """The window changes this model's output (so the matrix really passes it), and speculative decoding
    with a full-layer cache still reproduces the windowed output, also when the caller hands over a
    sliding-window cache of its own."""
    windowed = CASES["mistral-sliding-window"].build()
    unwindowed = Case("MistralForCausalLM", "MistralConfig", dict(SHARP, sliding_window=None)).build()
    unwindowed.load_state_dict(windowed.state_dict())
    inputs = text_inputs(0)
    reference = windowed.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert not torch.equal(reference, unwindowed.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False))
    sliding = DynamicCache(config=windowed.config)
    out = speculative_generate(windowed, SelfDrafter.from_target(windowed, num_layers=1), **inputs,
                               max_new_tokens=NEW_TOKENS, do_sample=False, **{cache_keyword(windowed): sliding})
    assert torch.equal(out.sequences, reference)
    assert out.num_drafted > out.num_accepted  # drafts were rejected after the window was passed: crops happened


def test_phi3_longrope_crossing_the_switch_is_exact_for_every_prompt_length():
    """Phi-3 recomputes every position with the long factors once the sequence exceeds
    original_max_position_embeddings (16), into a new cache: prompts below, at and above it."""
    model = CASES["phi3-longrope"].build()
    if installed_release() < LONGROPE_SWITCH_RECOMPUTED_FROM:
        pytest.skip(f"transformers {transformers.__version__} refuses this (tested in the matrix)")
    for length in (3, 12, 15, 16, 17, 20):
        inputs = text_inputs(length, length=length)
        reference = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        for drafter in (SelfDrafter.from_target(model, num_layers=2, draft_len=5, adaptive=False),
                        FlashDrafter.from_target(model, num_queries=2, draft_len=5, context_window=4)):
            out = speculative_generate(model, drafter, **inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
            assert torch.equal(out.sequences, reference), (length, type(drafter).__name__)
