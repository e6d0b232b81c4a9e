"""Tiny diffusers transformers built from configs, with matching random inputs (no downloads)."""

from __future__ import annotations

import torch
from diffusers import (CogVideoXTransformer3DModel, DiTTransformer2DModel, FluxTransformer2DModel,
                       PixArtTransformer2DModel, SD3Transformer2DModel, WanTransformer3DModel)


def pixart(height=12, width=10):
    model = PixArtTransformer2DModel(
        sample_size=16, num_layers=2, attention_head_dim=8, num_attention_heads=2, in_channels=4,
        out_channels=4, cross_attention_dim=16, caption_channels=12, patch_size=2, norm_type="ada_norm_single",
        use_additional_conditions=False)
    inputs = dict(hidden_states=torch.randn(2, 4, height, width), encoder_hidden_states=torch.randn(2, 5, 12),
                  timestep=torch.tensor([500, 500]), added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    return model, inputs, (height // 2, width // 2)


def dit(height=12, width=12):
    """DiT in diffusers only takes square latents."""
    model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                  num_layers=2, sample_size=16, patch_size=2, num_embeds_ada_norm=10)
    inputs = dict(hidden_states=torch.randn(2, 4, height, width), timestep=torch.tensor([500, 500]),
                  class_labels=torch.tensor([1, 3]))
    return model, inputs, (height // 2, width // 2)


def sd3(height=12, width=10, dual=True):
    model = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4,
        pos_embed_max_size=16, dual_attention_layers=(0,) if dual else (), qk_norm="rms_norm")
    inputs = dict(hidden_states=torch.randn(2, 4, height, width), encoder_hidden_states=torch.randn(2, 6, 12),
                  pooled_projections=torch.randn(2, 8), timestep=torch.tensor([500, 500]))
    return model, inputs, (height // 2, width // 2)


def flux(height=6, width=5):
    model = FluxTransformer2DModel(patch_size=1, in_channels=8, num_layers=2, num_single_layers=2,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=12,
                                   pooled_projection_dim=8, axes_dims_rope=(4, 6, 6))
    img_ids = torch.zeros(height, width, 3)
    img_ids[..., 1] = torch.arange(height)[:, None]
    img_ids[..., 2] = torch.arange(width)[None, :]
    inputs = dict(hidden_states=torch.randn(2, height * width, 8), encoder_hidden_states=torch.randn(2, 7, 12),
                  pooled_projections=torch.randn(2, 8), timestep=torch.tensor([0.5, 0.5]),
                  img_ids=img_ids.reshape(-1, 3), txt_ids=torch.zeros(7, 3))
    return model, inputs, (height, width)


def cogvideox(frames=3, height=8, width=6):
    model = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=12, num_layers=2, sample_width=width, sample_height=height, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=5, use_rotary_positional_embeddings=True)
    inputs = dict(hidden_states=torch.randn(2, frames, 4, height, width), encoder_hidden_states=torch.randn(2, 5, 12),
                  timestep=torch.tensor([500, 500]), image_rotary_emb=_cog_rope(frames, height // 2, width // 2))
    return model, inputs, (frames, height // 2, width // 2)


def _cog_rope(frames, height, width):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    return get_3d_rotary_pos_embed(embed_dim=16, crops_coords=((0, 0), (height, width)), grid_size=(height, width),
                                   temporal_size=frames)


def wan(frames=3, height=8, width=6):
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                  in_channels=4, out_channels=4, text_dim=12, freq_dim=16, ffn_dim=32, num_layers=2,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    inputs = dict(hidden_states=torch.randn(2, 4, frames, height, width), timestep=torch.tensor([500, 500]),
                  encoder_hidden_states=torch.randn(2, 5, 12))
    return model, inputs, (frames, height // 2, width // 2)


FAMILY_BUILDERS = {"pixart": pixart, "dit": dit, "sd3": sd3, "flux": flux, "cogvideox": cogvideox, "wan": wan}


def build(family: str, seed: int = 0, **sizes):
    torch.manual_seed(seed)
    model, inputs, grid = FAMILY_BUILDERS[family](**sizes)
    return model.eval(), inputs, grid


def run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]
