"""Timestep (+ class label) embedding shared by the models, built from diffusers' embedding layers.

Class-conditional models use diffusers' `CombinedTimestepLabelEmbeddings` (DiT's: sinusoidal
timestep -> MLP, plus a label table with one extra "null" row for classifier-free guidance), so
a dense DiT's embedding weights load unchanged. Text-conditional and unconditional models embed
the timestep only (text enters through cross-attention).
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import CombinedTimestepLabelEmbeddings, TimestepEmbedding, Timesteps
from torch import nn


class TimestepConditioning(nn.Module):
    """(B, dim) conditioning vector from timesteps and, when `num_classes` is set, class labels."""

    def __init__(self, dim: int, num_classes: int | None = None, class_dropout_prob: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        if num_classes is not None:
            self.embed = CombinedTimestepLabelEmbeddings(num_classes, dim, class_dropout_prob)
        else:
            self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=1)
            self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=dim)

    def forward(self, timestep: torch.Tensor | float | int, class_labels: torch.Tensor | None,
                batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=device)
        if timestep.dim() == 0:
            timestep = timestep.expand(batch)
        if timestep.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape (batch,) = ({batch},), got {tuple(timestep.shape)}")
        if self.num_classes is None:
            if class_labels is not None:
                raise ValueError("class_labels were given but the model is not class-conditional "
                                 "(num_embeds_ada_norm=None)")
            return self.timestep_embedder(self.time_proj(timestep).to(dtype))
        if class_labels is None:
            raise ValueError(f"class_labels (batch,) are required: the model is class-conditional with "
                             f"{self.num_classes} classes (label {self.num_classes} is the null class)")
        class_labels = torch.as_tensor(class_labels, device=device).reshape(-1)
        if class_labels.shape != (batch,):
            raise ValueError(f"class_labels must have shape ({batch},), got {tuple(class_labels.shape)}")
        return self.embed(timestep, class_labels, hidden_dtype=dtype)


def check_model_inputs(hidden_states: torch.Tensor, patch_size: int, cross_attention_dim: int | None,
                       encoder_hidden_states: torch.Tensor | None) -> None:
    """Validate a latent against the patch size, and the text input against the model's conditioning."""
    height, width = hidden_states.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"latent size {height}x{width} must be divisible by patch_size={patch_size}")
    if (cross_attention_dim is None) != (encoder_hidden_states is None):
        raise ValueError("encoder_hidden_states (B, text tokens, cross_attention_dim) must be given exactly "
                         f"when the model is text-conditional (cross_attention_dim={cross_attention_dim})")
