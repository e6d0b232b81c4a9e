"""Wan 2.1 / 2.2: video self-attention (`attn1`) with interleaved RoPE; text cross-attention untouched."""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor, projections
from genaccel.attention.reuse import step_reuse


class WanProcessor(SparseProcessor):
    """Wan 2.x video self-attention, as `WanAttnProcessor` computes it, with sparse attention."""

    @step_reuse
    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None):
        if self.dense_now() or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        self.reject_mask(attention_mask)
        query, key, value = projections(attn, hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))  # (B, S, H, D)
        if rotary_emb is not None:
            query, key = wan_rotary(query, *rotary_emb), wan_rotary(key, *rotary_emb)
        out = self.attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), text_len=0,
                          text_first=True)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def wan_rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved (even, odd) channel pairs, as its own processor applies it."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out.type_as(x)


def _video_grid(config, inputs) -> tuple[int, int, int]:
    pt, ph, pw = config.patch_size
    shape = inputs["hidden_states"].shape  # (B, C, frames, H, W)
    return (int(shape[2]) // pt, int(shape[3]) // ph, int(shape[4]) // pw)


WAN = ModelFamily(
    name="wan", class_names=("WanTransformer3DModel",), attention_patterns=(r"blocks\.(\d+)\.attn1",),
    processor=WanProcessor, replaces=("WanAttnProcessor", "WanAttnProcessor2_0"), read_grid=_video_grid)
