"""A class-conditional diffusion pipeline: a DiT-style transformer and a scheduler, in pixel space, or
in the latent space of an optional `vae` (an AutoencoderKL-style model: `decode(z).sample`,
`config.scaling_factor`, e.g. a `genaccel.tokenizers.MultiScaleTokenizer`).

Classifier-free guidance follows diffusers' DiTPipeline: the conditional and unconditional
inputs are stacked into one batch of twice the size, so the transformer (and any attention
processor `genaccel.apply` puts on it) sees one call per denoising step.
"""

# No `from __future__ import annotations` here: diffusers < 0.37 reads a pipeline's __init__
# annotations as objects to type-check its components (string annotations raise KeyError in
# `from_pretrained`), and accepts `typing.Optional` but not `X | None` there.
import inspect
from typing import Optional, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

OUTPUT_TYPES = ("pil", "pt", "np")


def null_class_id(transformer: torch.nn.Module) -> int:
    """The label index a transformer reserves for "no class" (classifier-free guidance)."""
    config = transformer.config
    for key in ("num_embeds_ada_norm", "num_classes"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"{type(transformer).__name__}.config has neither 'num_embeds_ada_norm' nor "
                     "'num_classes': cannot tell the number of classes")


def class_label_ids(class_labels, class_names: Optional[Sequence[str]], num_classes: int,
                    device: torch.device) -> torch.Tensor:
    """Class ids (long tensor) of ints, class names, a sequence of them or a tensor; errors name the
    unknown name or the id outside [0, num_classes)."""
    if isinstance(class_labels, torch.Tensor):
        labels = [int(v) for v in class_labels.flatten().tolist()]
    elif isinstance(class_labels, (int, str)):
        labels = [class_labels]
    else:
        labels = list(class_labels)
    ids = []
    for label in labels:
        if isinstance(label, str):
            if class_names is None or label not in class_names:
                raise ValueError(f"unknown class name {label!r}; known: {class_names}")
            label = list(class_names).index(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"class labels must be ints or class names, got {label!r}")
        if not 0 <= label < num_classes:
            raise ValueError(f"class label {label} is outside [0, {num_classes})")
        ids.append(int(label))
    if not ids:
        raise ValueError("class_labels is empty: give at least one class")
    return torch.tensor(ids, dtype=torch.long, device=device)


class ClassConditionalPipeline(DiffusionPipeline):
    """Sample images of given classes from a class-conditional transformer (pixels, or a vae's latents)."""

    model_cpu_offload_seq = "transformer->vae"
    _optional_components = ["vae"]

    def __init__(self, transformer: torch.nn.Module, scheduler, class_names: Optional[Sequence[str]] = None,
                 vae: Optional[torch.nn.Module] = None) -> None:
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, vae=vae)
        self.class_names = list(class_names) if class_names is not None else None

    @property
    def num_classes(self) -> int:
        return null_class_id(self.transformer)

    def _label_ids(self, class_labels: int | str | Sequence[int | str] | torch.Tensor) -> torch.Tensor:
        return class_label_ids(class_labels, self.class_names, self.num_classes, self._execution_device)

    @torch.no_grad()
    def __call__(self, class_labels: int | str | Sequence[int | str] | torch.Tensor,
                 num_inference_steps: int = 50,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 guidance_scale: float = 1.0, output_type: str = "pil",
                 return_dict: bool = True, image_size: int | None = None) -> ImagePipelineOutput | tuple:
        """Denoise one image per entry of `class_labels` (ints or class names).

        guidance_scale > 1 turns on classifier-free guidance (a batch of 2x the images per step);
        output_type is 'pil' (list of images), 'pt' ((B, 3, H, W) in [0, 1]) or 'np' ((B, H, W, 3)).
        image_size (pixels per side) defaults to the transformer's sample_size; other sizes run
        (for timing attention on larger token grids) but lie outside what the model was trained on.
        With a `vae` the transformer denoises latents (sample_size per side) that the vae decodes;
        image_size is then the vae's own (or None).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        labels = self._label_ids(class_labels)
        config = self.transformer.config
        vae = getattr(self, "vae", None)
        channels, size = config.in_channels, config.sample_size if image_size is None else image_size
        if vae is not None:
            vae_size = getattr(vae.config, "image_size", None)
            if image_size is not None and image_size != vae_size:
                raise ValueError(f"this pipeline decodes latents with its vae, which makes {vae_size} px images; "
                                 f"image_size must be {vae_size} or None, got {image_size!r}")
            size = config.sample_size
        if not isinstance(size, int) or size < config.patch_size or size % config.patch_size:
            raise ValueError(f"image_size must be a positive multiple of the patch size ({config.patch_size}), "
                             f"got {image_size!r}")
        dtype = next(self.transformer.parameters()).dtype
        sample = randn_tensor((len(labels), channels, size, size), generator=generator,
                              device=self._execution_device, dtype=dtype)
        use_guidance = guidance_scale > 1.0
        if use_guidance:
            labels = torch.cat([labels, torch.full_like(labels, self.num_classes)])
        step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generator
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        for timestep in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if use_guidance else sample
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            timesteps = timestep.expand(model_input.shape[0]).to(self._execution_device)
            output = self.transformer(model_input, timestep=timesteps, class_labels=labels).sample
            output = output[:, :channels]  # a learned-variance head (2x channels) is not used
            if use_guidance:
                conditional, unconditional = output.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            sample = self.scheduler.step(output, timestep, sample, **step_kwargs).prev_sample
        if vae is not None:
            vae_dtype = next(vae.parameters()).dtype
            sample = vae.decode(sample.to(vae_dtype) / vae.config.scaling_factor).sample
        images = (sample.float() / 2 + 0.5).clamp(0, 1)
        self.maybe_free_model_hooks()
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            arrays = (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            images = [Image.fromarray(array) for array in arrays]
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def image_grid(images: Sequence[Image.Image], columns: int) -> Image.Image:
    """Paste equally sized images into a grid with `columns` columns."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    width, height = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
