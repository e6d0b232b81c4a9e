"""Tiny targets for the pruning tests: tests/speculative/tiny_targets.py, plus LLaVA-NeXT, larger Qwen
images, a Qwen2.5-VL whose windows reorder patches, and batches."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speculative"))

from tiny_targets import (IMAGE_TOKEN, VISION_END, VISION_START, _text, llava_inputs,  # noqa: E402
                          qwen2_vl_inputs, tiny_llava, tiny_qwen2_5_vl, tiny_qwen2_vl)


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


def llava_batch(seed: int = 0) -> dict:
    """Two rows, one image each, same prompt length."""
    rows = [llava_inputs(seed + row) for row in range(2)]
    return {key: torch.cat([row[key] for row in rows]) for key in rows[0]}


def qwen_batch(seed: int = 0) -> dict:
    """Two rows, one 4 x 4-patch image each (4 LM tokens), same prompt length."""
    rows = [qwen2_vl_inputs(seed + row) for row in range(2)]
    batch = {key: torch.cat([row[key] for row in rows]) for key in rows[0]}
    batch["image_grid_thw"] = torch.cat([row["image_grid_thw"] for row in rows])
    return batch


def qwen_large_inputs(seed: int = 0, grid: tuple[int, int] = (8, 8)) -> dict:
    """One image of grid[0] x grid[1] patches (2 x 2 merged: grid / 4 LM tokens)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = grid[0] * grid[1] // 4
    text = torch.randint(3, 80, (5,), generator=generator)
    image = torch.tensor([VISION_START] + [IMAGE_TOKEN] * tokens + [VISION_END])
    input_ids = torch.cat([text[:2], image, text[2:]])[None]
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(grid[0] * grid[1], 3 * 2 * 2 * 2, generator=generator),
            "image_grid_thw": torch.tensor([[1, *grid]]), "mm_token_type_ids": (input_ids == IMAGE_TOKEN).int()}


def tiny_qwen2_5_vl_windows(seed: int = 0):
    """Qwen2.5-VL whose windows reorder the patches (window 8 px = 2 x 2 LM tokens), one full-attention block."""
    return tiny_qwen2_5_vl(seed, depth=2, fullatt_block_indexes=(1,), window_size=8)


# name -> (build, single inputs, batch of two)
TARGETS = {
    "llava": (tiny_llava, llava_inputs, llava_batch),
    "llava_next": (tiny_llava_next, llava_next_inputs, lambda seed=0: llava_next_inputs(seed, ((16, 32), (32, 16)))),
    "qwen2_vl": (tiny_qwen2_vl, qwen_large_inputs, qwen_batch),
    "qwen2_5_vl": (tiny_qwen2_5_vl, qwen_large_inputs, qwen_batch),
}
METHOD_NAMES = ("fastv", "visionzip", "divprune", "random", "cls")
