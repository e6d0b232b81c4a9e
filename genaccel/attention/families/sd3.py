"""SD3 / SD3.5: joint text-image attention (image first, text last, text dense) and SD3.5's image-only `attn2`."""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor, heads_qkv, image_grid, merge_heads
from genaccel.attention.reuse import step_reuse


class SD3JointProcessor(SparseProcessor):
    """SD3 joint attention and SD3.5's dual `attn2` (no text), as `JointAttnProcessor2_0` computes them."""

    @step_reuse
    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 *args, **kwargs):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        self.reject_mask(attention_mask)
        batch, n_image = hidden_states.shape[:2]
        query, key, value = heads_qkv(attn, hidden_states)
        split = lambda t: t.view(batch, -1, attn.heads, query.shape[-1]).transpose(1, 2)  # noqa: E731
        text_len = 0
        if encoder_hidden_states is not None:
            text_q = split(attn.add_q_proj(encoder_hidden_states))
            text_k = split(attn.add_k_proj(encoder_hidden_states))
            text_v = split(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                text_q = attn.norm_added_q(text_q)
            if attn.norm_added_k is not None:
                text_k = attn.norm_added_k(text_k)
            query, key, value = (torch.cat(p, dim=2) for p in ((query, text_q), (key, text_k), (value, text_v)))
            text_len = encoder_hidden_states.shape[1]
        out = merge_heads(self.attend(query, key, value, text_len=text_len, text_first=False)).to(query.dtype)
        image_out = attn.to_out[1](attn.to_out[0](out[:, :n_image]))
        if encoder_hidden_states is None:
            return image_out
        text_out = out[:, n_image:]
        if not attn.context_pre_only:
            text_out = attn.to_add_out(text_out)
        return image_out, text_out


SD3 = ModelFamily(
    name="sd3", class_names=("SD3Transformer2DModel",), attention_patterns=(r"transformer_blocks\.(\d+)\.attn2?",),
    processor=SD3JointProcessor, replaces=("JointAttnProcessor2_0", "FusedJointAttnProcessor2_0", "AttnProcessor2_0"),
    read_grid=lambda config, inputs: image_grid(inputs["hidden_states"], config.patch_size))
