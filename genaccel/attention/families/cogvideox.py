"""CogVideoX 1.0 / 1.5: joint text + video attention with shared projections; text first, RoPE on video only."""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor, heads_qkv, image_grid, merge_heads
from genaccel.attention.reuse import step_reuse


class CogVideoXProcessor(SparseProcessor):
    """CogVideoX joint attention, as `CogVideoXAttnProcessor2_0` computes it, with sparse video attention."""

    @step_reuse
    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask=None, image_rotary_emb=None):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        self.reject_mask(attention_mask)
        text_len = encoder_hidden_states.shape[1]
        query, key, value = heads_qkv(attn, torch.cat([encoder_hidden_states, hidden_states], dim=1))
        if image_rotary_emb is not None:
            query = torch.cat([query[:, :, :text_len], apply_rotary_emb(query[:, :, text_len:], image_rotary_emb)], 2)
            key = torch.cat([key[:, :, :text_len], apply_rotary_emb(key[:, :, text_len:], image_rotary_emb)], 2)
        out = merge_heads(self.attend(query, key, value, text_len=text_len, text_first=True))
        out = attn.to_out[1](attn.to_out[0](out))
        text_out, video_out = out.split([text_len, out.shape[1] - text_len], dim=1)
        return video_out, text_out


def _video_grid(config, inputs) -> tuple[int, int, int]:
    hidden_states = inputs["hidden_states"]  # (B, frames, C, H, W)
    return (int(hidden_states.shape[1]) // (config.patch_size_t or 1), *image_grid(hidden_states, config.patch_size))


COGVIDEOX = ModelFamily(
    name="cogvideox", class_names=("CogVideoXTransformer3DModel",),
    attention_patterns=(r"transformer_blocks\.(\d+)\.attn1",),
    processor=CogVideoXProcessor, replaces=("CogVideoXAttnProcessor2_0", "FusedCogVideoXAttnProcessor2_0"),
    read_grid=_video_grid)
