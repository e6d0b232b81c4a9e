"""Loading a captioning target, its processor and a folder of images for the CLI commands.

Errors are the user's (missing model, empty folder, unreadable image) and say what was looked at.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from genaccel.errors import UserFacingError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_target(model_id: str, device: str = "cpu", dtype: str = "float32"):
    """(model, processor) from a local folder or a Hugging Face id already in the local cache."""
    local = Path(model_id).expanduser()
    if dtype not in DTYPES:
        raise UserFacingError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    looks_local = local.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if looks_local and not local.is_dir():
        raise UserFacingError(f"no model folder at {local.resolve()} (expected a folder with config.json)")
    source = str(local) if looks_local else model_id
    try:
        config = AutoConfig.from_pretrained(source)
        model_class = AutoModelForCausalLM if config.model_type in _text_only_types() else AutoModelForImageTextToText
        model = model_class.from_pretrained(source, dtype=DTYPES[dtype]).to(device).eval()
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface/hub"
        where = f"the folder {local.resolve()}" if looks_local else (
            f"the local folder {local.resolve()} (absent) and the Hugging Face hub / cache ({cache})")
        raise UserFacingError(f"could not load model {model_id!r}: looked in {where}: "
                              f"{str(error).splitlines()[0]}") from error
    return model, processor


def _text_only_types() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, \
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) - set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def list_images(folder: str | Path) -> list[Path]:
    """Image files (or video frames) in `folder`, sorted by name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserFacingError(f"image folder {folder.resolve()} does not exist or is not a folder")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserFacingError(f"no images in {folder.resolve()} (accepted suffixes: {', '.join(IMAGE_SUFFIXES)})")
    return images


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UserFacingError(f"cannot read image {path}: {error}") from error


def build_prompt(processor, prompt: str) -> str:
    """The text given to the processor: `prompt` verbatim when it holds the image token, else the
    processor's chat template with one image and `prompt` as the user turn."""
    image_token = getattr(processor, "image_token", None)
    if image_token and image_token in prompt:
        return prompt
    if getattr(processor, "chat_template", None):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    raise UserFacingError(f"the processor has no chat template, so the prompt must contain the image token "
                          f"{image_token!r} where the image goes; got {prompt!r}")


def image_inputs(processor, image: Image.Image, prompt_text: str, model) -> dict:
    """Processor outputs for one image on the model's device (floating tensors in its dtype)."""
    inputs = processor(images=[image], text=[prompt_text], return_tensors="pt")
    return {key: value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)
            for key, value in inputs.items()}
