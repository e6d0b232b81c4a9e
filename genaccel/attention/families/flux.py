"""Flux.1: double-stream (joint text + image, text first) and single-stream attention with RoPE.

The image token grid is read from `img_ids` (one row-major grid; Flux Kontext's reference images are
refused). Reading tensor values is a host sync, so under torch.compile the grid comes from the
pipeline instead (`genaccel.apply(pipe, ...)` records it when the pipeline prepares its latents).
"""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor, projections
from genaccel.attention.reuse import step_reuse


class FluxProcessor(SparseProcessor):
    """Flux double-stream (text and image projections, joint) and single-stream attention; text first."""

    @step_reuse
    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        if self.dense_now():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        self.reject_mask(attention_mask)
        query, key, value = projections(attn, hidden_states)
        heads = lambda t: t.unflatten(-1, (-1, attn.head_dim))  # noqa: E731  (B, S, H, D)
        query, key, value = heads(query), heads(key), heads(value)
        query, key = attn.norm_q(query), attn.norm_k(key)
        joint = encoder_hidden_states is not None and attn.added_kv_proj_dim is not None
        if joint:
            if getattr(attn, "fused_projections", False):
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
        text_tokens = encoder_hidden_states.shape[1]
        text_out, image_out = out.split_with_sizes([text_tokens, out.shape[1] - text_tokens], dim=1)
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())


def grid_from_ids(img_ids: torch.Tensor) -> tuple[int, int]:
    """(height, width) of Flux's image-token ids; raises unless they form one row-major grid (a host sync)."""
    ids = img_ids[0] if img_ids.dim() == 3 else img_ids
    rows, cols = ids[:, 1].round().long(), ids[:, 2].round().long()
    height, width = int(rows.max()) + 1, int(cols.max()) + 1
    expected = torch.arange(ids.shape[0], device=ids.device)
    if (height * width != ids.shape[0] or not torch.equal(rows, expected // width)
            or not torch.equal(cols, expected % width) or not torch.all(ids[:, 0] == ids[0, 0])):
        raise ValueError("genaccel: Flux img_ids do not form one row-major image grid (several images, "
                         "e.g. Flux Kontext references, are not supported by sparse attention)")
    return (height, width)


class LatentGridRecorder:
    """Records the image grid when a Flux pipeline prepares its latents (`prepare_latents`, patched on the
    instance), so the transformer's hook needs no tensor values per call. `restore` undoes the patch."""

    def __init__(self, pipeline, states):
        self.pipeline = pipeline
        self.states = states
        self._own = pipeline.__dict__.get("prepare_latents")
        original = pipeline.prepare_latents

        def prepare_latents(*args, **kwargs):
            result = original(*args, **kwargs)
            ids = next((t for t in (result if isinstance(result, tuple) else ())
                        if torch.is_tensor(t) and t.dim() == 2 and t.shape[-1] == 3), None)
            grid = grid_from_ids(ids) if ids is not None else None
            for state in self.states:
                state.recorded_grid = grid
            return result

        pipeline.prepare_latents = prepare_latents

    def restore(self) -> None:
        if self._own is not None:
            self.pipeline.prepare_latents = self._own
        else:
            self.pipeline.__dict__.pop("prepare_latents", None)
        for state in self.states:
            state.recorded_grid = None


def record_grid(pipeline, states) -> LatentGridRecorder | None:
    """A recorder on `pipeline` if it prepares Flux latents (it has `prepare_latents`), else None."""
    return LatentGridRecorder(pipeline, states) if callable(getattr(pipeline, "prepare_latents", None)) else None


FLUX = ModelFamily(
    name="flux", class_names=("FluxTransformer2DModel",),
    attention_patterns=(r"transformer_blocks\.(\d+)\.attn", r"single_transformer_blocks\.(\d+)\.attn"),
    processor=FluxProcessor, replaces=("FluxAttnProcessor", "FluxAttnProcessor2_0", "FusedFluxAttnProcessor2_0"),
    read_grid=lambda config, inputs: grid_from_ids(inputs["img_ids"]), grid_needs_data=True,
    record_grid=record_grid)
