"""A class-conditional pixel-space video diffusion pipeline around diffusers' `WanTransformer3DModel`.

Wan is a text-to-video transformer: its condition enters as `encoder_hidden_states` (B, L, text_dim)
through cross-attention. Here the "text" is one token, the one-hot vector of the class: with
`text_dim = num_classes + 1` Wan's own text projection is then a learned class embedding, the last
row being the null class of classifier-free guidance. Nothing outside diffusers' class is needed, so
`genaccel.apply` patches this transformer exactly as it patches a real Wan.

Classifier-free guidance stacks the conditional and unconditional inputs into one batch, as in
`ClassConditionalPipeline`: one transformer call per denoising step.
"""

# No `from __future__ import annotations` here: diffusers < 0.37 reads a pipeline's __init__
# annotations as objects to type-check its components.
import inspect
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from genaccel.pipelines.class_conditional import class_label_ids

OUTPUT_TYPES = ("np", "pt", "pil")


@dataclass
class VideoPipelineOutput(BaseOutput):
    """`frames`: one clip per class label: (T, H, W, 3) float arrays in [0, 1] ('np'), (T, 3, H, W)
    tensors ('pt') or lists of T PIL images ('pil')."""

    frames: Union[List[np.ndarray], List[torch.Tensor], List[List[Image.Image]]]


def class_condition(labels: torch.Tensor, text_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, text_dim) one-hot "text" tokens of class `labels` (the null class is `text_dim - 1`)."""
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-d tensor of class ids, got shape {tuple(labels.shape)}")
    return torch.nn.functional.one_hot(labels, text_dim).to(dtype)[:, None, :]


def video_num_classes(transformer: torch.nn.Module) -> int:
    """Classes of a class-conditional Wan: its text_dim minus the null class."""
    text_dim = getattr(transformer.config, "text_dim", None)
    if not isinstance(text_dim, int) or text_dim < 2:
        raise ValueError(f"{type(transformer).__name__} is not a class-conditional Wan (config.text_dim "
                         f"{text_dim!r}; expected num_classes + 1 >= 2)")
    return text_dim - 1


class ClassConditionalVideoPipeline(DiffusionPipeline):
    """Sample clips of given classes from a class-conditional pixel-space `WanTransformer3DModel`."""

    model_cpu_offload_seq = "transformer"

    def __init__(self, transformer: torch.nn.Module, scheduler, class_names: Optional[Sequence[str]] = None,
                 num_frames: int = 16, image_size: int = 32) -> None:
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler)
        self.register_to_config(num_frames=num_frames, image_size=image_size)  # what the model was trained on
        self.class_names = list(class_names) if class_names is not None else None

    @property
    def num_classes(self) -> int:
        return video_num_classes(self.transformer)

    def _label_ids(self, class_labels) -> torch.Tensor:
        return class_label_ids(class_labels, self.class_names, self.num_classes, self._execution_device)

    @torch.no_grad()
    def __call__(self, class_labels: Union[int, str, Sequence[Union[int, str]]], num_inference_steps: int = 50,
                 generator: Optional[torch.Generator] = None, guidance_scale: float = 1.0, output_type: str = "np",
                 return_dict: bool = True, num_frames: Optional[int] = None,
                 image_size: Optional[int] = None) -> Union[VideoPipelineOutput, tuple]:
        """Denoise one clip per entry of `class_labels` (ints or class names).

        num_frames defaults to the frames the model was trained on (config), image_size (pixels per
        side) to the transformer's training size; other sizes run (to time attention on larger token
        grids) but lie outside what the model learned. guidance_scale > 1: classifier-free guidance.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        labels = self._label_ids(class_labels)
        config = self.transformer.config
        patch_t, patch_h, patch_w = config.patch_size
        frames = self.config.num_frames if num_frames is None else num_frames
        size = self.config.image_size if image_size is None else image_size
        if not isinstance(frames, int) or frames < patch_t or frames % patch_t:
            raise ValueError(f"num_frames must be a positive multiple of the temporal patch ({patch_t}), got {frames!r}")
        if not isinstance(size, int) or size < patch_h or size % patch_h or size % patch_w:
            raise ValueError(f"image_size must be a positive multiple of the patch size ({patch_h}), got {size!r}")
        dtype = next(self.transformer.parameters()).dtype
        sample = randn_tensor((len(labels), config.in_channels, frames, size, size), generator=generator,
                              device=self._execution_device, dtype=dtype)
        use_guidance = guidance_scale > 1.0
        if use_guidance:
            labels = torch.cat([labels, torch.full_like(labels, self.num_classes)])
        condition = class_condition(labels, config.text_dim, dtype)
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        for timestep in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if use_guidance else sample
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            output = self.transformer(model_input, timestep=timestep.expand(model_input.shape[0]),
                                      encoder_hidden_states=condition, return_dict=False)[0]
            if use_guidance:
                conditional, unconditional = output.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            sample = self.scheduler.step(output, timestep, sample, **step_kwargs).prev_sample
        clips = (sample.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (B, T, 3, H, W)
        self.maybe_free_model_hooks()
        if output_type == "pt":
            frames_out = list(clips.cpu())
        else:
            arrays = clips.permute(0, 1, 3, 4, 2).cpu().numpy()
            frames_out = list(arrays) if output_type == "np" else [
                [Image.fromarray(frame) for frame in (clip * 255).round().astype(np.uint8)] for clip in arrays]
        if not return_dict:
            return (frames_out,)
        return VideoPipelineOutput(frames=frames_out)
