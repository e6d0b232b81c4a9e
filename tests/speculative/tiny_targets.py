"""Tiny random targets (no downloads) and their inputs: LLaVA, Qwen2-VL and a text-only Llama."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig,
                          LlavaForConditionalGeneration, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLConfig, Qwen2VLForConditionalGeneration)

VOCAB = 96
IMAGE_TOKEN = 90
VISION_START, VISION_END, VIDEO_TOKEN = 91, 92, 93
EOS = 2


def _text(hidden: int = 32, layers: int = 4, eos: int | None = None) -> dict:
    return dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=1, eos_token_id=eos, pad_token_id=0)


def tiny_llama(seed: int = 0, eos: int | None = None, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**_text(hidden, eos=eos))).eval()


def tiny_llava(seed: int = 0, eos: int | None = None) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=4),
        text_config=LlamaConfig(**_text(eos=eos)), image_token_id=IMAGE_TOKEN, vision_feature_layer=-1,
    )
    return LlavaForConditionalGeneration(config).eval()


def tiny_qwen2_vl(seed: int = 0, eos: int | None = None) -> Qwen2VLForConditionalGeneration:
    torch.manual_seed(seed)
    text = _text(eos=eos)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
    config = Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=2,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        text_config=text, image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END,
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def tiny_qwen2_5_vl(seed: int = 0, eos: int | None = None, depth: int = 1, fullatt_block_indexes: tuple = (0,),
                    window_size: int = 4) -> Qwen2_5_VLForConditionalGeneration:
    """window_size is in pixels: 4 = one LM token (2 x 2 patches merged), so windows do not reorder patches."""
    torch.manual_seed(seed)
    text = _text(eos=eos)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=depth, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=2,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3, out_hidden_size=32,
                           fullatt_block_indexes=list(fullatt_block_indexes), window_size=window_size),
        text_config=text, image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END,
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_llava_next(seed: int = 0, eos: int | None = None):
    """LLaVA-NeXT with 16 px crops of 4 px patches (16 tokens a crop) and anyres grids up to 32 x 32."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    torch.manual_seed(seed)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=4),
        text_config=LlamaConfig(**_text(eos=eos)), image_token_id=IMAGE_TOKEN, vision_feature_layer=-1,
        image_grid_pinpoints=[[16, 32], [32, 16], [32, 32]])
    return LlavaNextForConditionalGeneration(config).eval()


def llava_next_inputs(seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((16, 32),)) -> dict:
    """One image per row (batch = len(sizes)), left-padded to a common length."""
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    model = tiny_llava_next()
    generator = torch.Generator().manual_seed(seed)
    crops = [image_size_to_num_patches(size, model.config.image_grid_pinpoints, 16) for size in sizes]
    pixel_values = torch.randn(len(sizes), max(crops), 3, 16, 16, generator=generator)
    image_sizes = torch.tensor(sizes)
    lengths = [len(f) for f in model.model.get_image_features(pixel_values, image_sizes).pooler_output]
    rows = []
    for length in lengths:
        text = torch.randint(3, 80, (5,), generator=generator)
        rows.append(torch.cat([text[:2], torch.full((length,), IMAGE_TOKEN), text[2:]]))
    width = max(len(row) for row in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, width - len(row):] = row
        attention_mask[index, width - len(row):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
            "image_sizes": image_sizes}


def text_inputs(seed: int = 0, length: int = 9) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 80, (1, length), generator=generator)}


def llava_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 80, (1, 5), generator=generator)
    image = torch.full((1, 16), IMAGE_TOKEN)  # (16 / 4)^2 patches, CLS dropped
    input_ids = torch.cat([text[:, :2], image, text[:, 2:]], dim=1)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(1, 3, 16, 16, generator=generator)}


def qwen2_vl_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    grid = torch.tensor([[1, 4, 4]])  # 16 patches, 2x2 merged -> 4 image tokens
    text = torch.randint(3, 80, (1, 5), generator=generator)
    image = torch.tensor([[VISION_START] + [IMAGE_TOKEN] * 4 + [VISION_END]])
    input_ids = torch.cat([text[:, :2], image, text[:, 2:]], dim=1)
    mm_token_type_ids = (input_ids == IMAGE_TOKEN).int()
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(16, 3 * 2 * 2 * 2, generator=generator), "image_grid_thw": grid,
            "mm_token_type_ids": mm_token_type_ids}


TARGETS = {"llava": (tiny_llava, llava_inputs), "qwen2_vl": (tiny_qwen2_vl, qwen2_vl_inputs),
           "qwen2_5_vl": (tiny_qwen2_5_vl, qwen2_vl_inputs),
           "llama": (tiny_llama, text_inputs)}


def save_tiny_captioner(folder) -> None:
    """A tiny random LLaVA with the caption-task tokenizer and a processor, saved like a hub model."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    from genaccel.data.captions import build_caption_tokenizer

    tokenizer = build_caption_tokenizer()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=4, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=4),
        text_config=LlamaConfig(**{**_text(), "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id}),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


CAPTION_PROMPT = "<s> <image> user : describe the image . assistant :"


def make_caption_workspace(root: Path) -> Path:
    """A tiny saved captioner (16 visual tokens per image) under root/model and three images under root/images."""
    from genaccel.data.captions import make_sample

    save_tiny_captioner(root / "model")
    (root / "images").mkdir()
    for seed in range(3):
        make_sample(seed, image_size=16).image.save(root / "images" / f"{seed}.png")
    return root


def run_caption(workspace: Path, output: Path, *extra: str) -> int:
    """`genaccel caption` over the workspace's images, 12 new tokens, writing `output` (JSON lines)."""
    from genaccel.cli import main

    return main(["caption", "--model", str(workspace / "model"), "--images", str(workspace / "images"),
                 "--prompt", CAPTION_PROMPT, "--output", str(output), "--max-new-tokens", "12", *extra])
