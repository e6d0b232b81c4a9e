"""The embedded default: a diffusers `DiTPipeline` built from a config shipped in the package.

No download is needed. Its weights are random (seeded) until a trained reference model ships, so it
measures speed and fidelity to its own dense output, not image quality.
"""

from __future__ import annotations

import json
from importlib.resources import files

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

DEMO_CONFIG = "configs/demo_dit.json"


def demo_config() -> dict:
    return json.loads(files("genaccel.pipelines").joinpath(DEMO_CONFIG).read_text())


def load_demo_pipeline(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                       seed: int = 0) -> DiTPipeline:
    """A class-conditional DiTPipeline (4096 image tokens per step) with seeded random weights."""
    config = demo_config()
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(**config["transformer"])
    vae = AutoencoderKL(**config["vae"])
    scheduler = DDIMScheduler(**config["scheduler"])
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=scheduler).to(device)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
