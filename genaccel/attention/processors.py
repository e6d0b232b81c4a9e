"""diffusers attention processors that run sparse attention, one per model family's attention shape.

Each processor computes q, k, v exactly as the processor it replaces (projections, q/k norms, RoPE),
then calls `genaccel.attention.ops.joint_attention` instead of dense attention, and projects the
output the same way. It keeps the original processor: dense steps call it unchanged.
"""

from __future__ import annotations

import torch

from genaccel.attention.layout import LayoutState
from genaccel.attention.ops import joint_attention
from genaccel.config import SparseAttentionConfig


def _heads_qkv(attn, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of an `Attention` module as (B, heads, S, D), with its q / k norms applied."""
    batch = hidden_states.shape[0]
    query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, value


def _projections(attn, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v projections of an `AttentionModuleMixin` module (Flux, Wan), fused or not: (B, S, inner)."""
    if attn.fused_projections:
        return attn.to_qkv(hidden_states).chunk(3, dim=-1)
    return attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)


def _merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(B, heads, S, D) -> (B, S, heads * D)."""
    return out.transpose(1, 2).flatten(2, 3)


class SparseProcessor:
    """Common part: when to stay dense, and the sparse attention call on (B, heads, S, D)."""

    def __init__(self, original, config: SparseAttentionConfig, state: LayoutState, block_index: int):
        self.original = original
        self.config = config
        self.state = state
        self.block_index = block_index

    def dense_now(self) -> bool:
        return self.state.step < self.config.dense_steps

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text_len: int,
               text_first: bool) -> torch.Tensor:
        grid = self.state.grid
        if grid is None:
            raise RuntimeError("genaccel: no token grid recorded; call the transformer itself (its forward "
                               "pre-hook records the grid), not the attention module alone")
        return joint_attention(query, key, value, grid, self.config.window_for(grid), method=self.config.method,
                               text_len=text_len, text_first=text_first,
                               shift=self.config.shifted(self.block_index), backend=self.config.backend)

    def image_tokens(self) -> int:
        grid = self.state.grid
        return 0 if grid is None else int(torch.tensor(grid).prod())

    @staticmethod
    def reject_mask(attention_mask) -> None:
        if attention_mask is not None:
            raise ValueError("genaccel sparse attention does not take an attention_mask on self-attention; "
                             "remove the mask or keep this block dense (dense_blocks=...)")


class SelfAttentionProcessor(SparseProcessor):
    """Image-only self-attention of `Attention` modules (PixArt-alpha/Sigma and DiT `attn1`)."""

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
        query, key, value = _heads_qkv(attn, hidden_states)
        out = _merge_heads(self.attend(query, key, value, text_len=0, text_first=True)).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class SD3JointProcessor(SparseProcessor):
    """SD3 / SD3.5 joint attention (image tokens first, text last) and SD3.5's image-only `attn2`."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 *args, **kwargs):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        self.reject_mask(attention_mask)
        batch, n_image = hidden_states.shape[:2]
        query, key, value = _heads_qkv(attn, hidden_states)
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
        out = _merge_heads(self.attend(query, key, value, text_len=text_len, text_first=False)).to(query.dtype)
        image_out = attn.to_out[1](attn.to_out[0](out[:, :n_image]))
        if encoder_hidden_states is None:
            return image_out
        text_out = out[:, n_image:]
        if not attn.context_pre_only:
            text_out = attn.to_add_out(text_out)
        return image_out, text_out


class FluxProcessor(SparseProcessor):
    """Flux double-stream (text and image projections, joint) and single-stream attention; text first."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        self.reject_mask(attention_mask)
        query, key, value = _projections(attn, hidden_states)
        heads = lambda t: t.unflatten(-1, (-1, attn.head_dim))  # noqa: E731  (B, S, H, D)
        query, key, value = heads(query), heads(key), heads(value)
        query, key = attn.norm_q(query), attn.norm_k(key)
        joint = encoder_hidden_states is not None and attn.added_kv_proj_dim is not None
        if joint:
            if attn.fused_projections:
                text_q, text_k, text_v = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
            else:
                text_q = attn.add_q_proj(encoder_hidden_states)
                text_k = attn.add_k_proj(encoder_hidden_states)
                text_v = attn.add_v_proj(encoder_hidden_states)
            text_q, text_k, text_v = heads(text_q), heads(text_k), heads(text_v)
            text_q, text_k = attn.norm_added_q(text_q), attn.norm_added_k(text_k)
            query, key, value = (torch.cat(p, dim=1) for p in ((text_q, query), (text_k, key), (text_v, value)))
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        text_len = query.shape[1] - self.image_tokens()
        out = self.attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                          text_len=text_len, text_first=True)
        out = out.transpose(1, 2).flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        text_out, image_out = out.split_with_sizes([encoder_hidden_states.shape[1], out.shape[1] - encoder_hidden_states.shape[1]], dim=1)
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())


class CogVideoXProcessor(SparseProcessor):
    """CogVideoX joint attention with shared projections; text first, RoPE on the video part only."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask=None, image_rotary_emb=None):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        self.reject_mask(attention_mask)
        text_len = encoder_hidden_states.shape[1]
        query, key, value = _heads_qkv(attn, torch.cat([encoder_hidden_states, hidden_states], dim=1))
        if image_rotary_emb is not None:
            query = torch.cat([query[:, :, :text_len], apply_rotary_emb(query[:, :, text_len:], image_rotary_emb)], 2)
            key = torch.cat([key[:, :, :text_len], apply_rotary_emb(key[:, :, text_len:], image_rotary_emb)], 2)
        out = _merge_heads(self.attend(query, key, value, text_len=text_len, text_first=True))
        out = attn.to_out[1](attn.to_out[0](out))
        text_out, video_out = out.split([text_len, out.shape[1] - text_len], dim=1)
        return video_out, text_out


class WanProcessor(SparseProcessor):
    """Wan 2.x video self-attention (`attn1`) with its interleaved RoPE; cross-attention is untouched."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 rotary_emb=None):
        if self.dense_now() or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        self.reject_mask(attention_mask)
        query, key, value = _projections(attn, hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))  # (B, S, H, D)
        if rotary_emb is not None:
            query, key = _wan_rotary(query, *rotary_emb), _wan_rotary(key, *rotary_emb)
        out = self.attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), text_len=0,
                          text_first=True)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def _wan_rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved (even, odd) channel pairs, as its own processor applies it."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out.type_as(x)
