"""Tiny targets for the pruning tests: tests/speculative/tiny_targets.py, plus LLaVA-NeXT, larger Qwen
images, a Qwen2.5-VL whose windows reorder patches, and batches."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speculative"))

from tiny_targets import (IMAGE_TOKEN, VISION_END, VISION_START, _text, llava_inputs,  # noqa: E402
                          llava_next_inputs, qwen2_vl_inputs, tiny_llava, tiny_llava_next, tiny_qwen2_5_vl,
                          tiny_qwen2_vl)


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
