"""Load a diffusers pipeline for benchmarking and run it once for a given prompt and seed."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; accepted: {', '.join(DTYPES)}")
    return DTYPES[name]


def load_pipeline(model: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """`demo` (the bundled reference DiT), `demo-emoji` (the bundled emoji DiT), `demo-random` (the 4096-token
    DiT with random weights), a local folder, or a hub id, through DiffusionPipeline.from_pretrained."""
    if model in ("demo", "demo-emoji"):
        from genaccel.pipelines.reference import load_reference_pipeline

        return load_reference_pipeline("image" if model == "demo" else "emoji", device=device, dtype=dtype)
    if model == "demo-random":
        from genaccel.pipelines.demo import load_demo_pipeline

        return load_demo_pipeline(device, dtype)
    from diffusers import DiffusionPipeline

    if not Path(model).exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise ValueError(f"no pipeline folder at {model}; pass a local folder with model_index.json, a hub id "
                         "(owner/name, needs the hub or its cache), `demo`, `demo-emoji` or `demo-random`")
    if Path(model).exists() and not Path(model).is_dir():
        raise ValueError(f"{model} is a file; pass a pipeline folder (with model_index.json), a hub id, `demo`, "
                         "`demo-emoji` or `demo-random`")
    pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype)
    return pipe.to(device)


def quiet(pipe):
    """Turn off the pipeline's own per-step progress bar (the benchmark shows one per method)."""
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def is_class_conditional(pipe) -> bool:
    """True for pipelines conditioned on class ids (DiT) rather than text."""
    return "class_labels" in inspect.signature(pipe.__call__).parameters


def generate(pipe, condition: str | int, seed: int, *, steps: int, guidance_scale: float | None = None,
             height: int | None = None, width: int | None = None) -> np.ndarray:
    """One output as uint8: (H, W, 3) for an image, (T, H, W, 3) for a video.

    The generator is seeded on the pipeline's device so every method sees the same initial noise.
    Floats in [0, 1] are rounded (not floored) to uint8.
    """
    device = getattr(pipe, "device", torch.device("cpu"))
    generator = torch.Generator(device=device).manual_seed(seed)
    kwargs: dict[str, object] = {"generator": generator, "num_inference_steps": steps, "output_type": "np"}
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    if is_class_conditional(pipe):
        kwargs["class_labels"] = [int(condition)]
    else:
        kwargs["prompt"] = str(condition)
        if height is not None:
            kwargs["height"] = height
        if width is not None:
            kwargs["width"] = width
    output = pipe(**kwargs)
    result = output.frames if hasattr(output, "frames") else output.images
    array = np.asarray(result[0], dtype=np.float32)
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
