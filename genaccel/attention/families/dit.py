"""PixArt-alpha / PixArt-Sigma and DiT: image-only self-attention (`attn1`); text cross-attention untouched."""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor, heads_qkv, image_grid, merge_heads
from genaccel.attention.reuse import step_reuse


class SelfAttentionProcessor(SparseProcessor):
    """Image-only self-attention of diffusers `Attention` modules (PixArt and DiT `attn1`)."""

    @step_reuse
    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        if self.dense_now() or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        self.reject_mask(attention_mask)
        if hidden_states.ndim != 3:
            raise ValueError(f"expected (B, tokens, channels) hidden states, got shape {tuple(hidden_states.shape)}")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query, key, value = heads_qkv(attn, hidden_states)
        out = merge_heads(self.attend(query, key, value, text_len=0, text_first=True)).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


_SELF_ATTENTION = ("AttnProcessor2_0", "AttnProcessor", "FusedAttnProcessor2_0")

PIXART = ModelFamily(
    name="pixart", class_names=("PixArtTransformer2DModel",), attention_patterns=(r"transformer_blocks\.(\d+)\.attn1",),
    processor=SelfAttentionProcessor, replaces=_SELF_ATTENTION,
    read_grid=lambda config, inputs: image_grid(inputs["hidden_states"], config.patch_size))

DIT = ModelFamily(
    name="dit", class_names=("DiTTransformer2DModel",), attention_patterns=(r"transformer_blocks\.(\d+)\.attn1",),
    processor=SelfAttentionProcessor, replaces=_SELF_ATTENTION,
    read_grid=lambda config, inputs: image_grid(inputs["hidden_states"], config.patch_size))
