"""Pruning inside the language model (fastv): score at layer k - 1, drop at layer k.

Layer k - 1's attention module is hooked: its q_proj (the last prompt token's query only) and
k_proj outputs are kept for that one forward, the layer's rotary embedding is applied with the
model's own `apply_rotary_pos_emb`, and one row of the attention map (last prompt token -> every
key, masked as the model masks it) is recomputed. The model keeps its attention kernel (sdpa).

Layer k's pre-hook gathers the hidden states, rotary cos / sin, position ids and 4-D mask at the
kept positions; layers after it get the same gathered inputs. In decode steps the layers from k on
hold a shorter cache than the layers before k (their own keys), so only their mask's key columns
are gathered. The cache's length (layer 0) stays the unpruned one, so position ids need no change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genaccel.token_pruning.sequence import gather_tokens

if TYPE_CHECKING:
    from genaccel.token_pruning.patch import TokenPruningPatch

SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass
class Scoring:
    """The prefill's pending in-LM pruning: filled by layer k - 1's hooks, used by layer k."""

    images: list[list[torch.Tensor]]  # per row, each image's positions
    keeps: list[list[int]]  # per row, K of each image
    last: torch.Tensor  # (B,) index of each row's last prompt token
    mask: torch.Tensor | None  # (B, L) the 2-D attention mask, or None
    capturing: bool = False
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None
    query: torch.Tensor | None = None  # (B, 1, H * d)
    keys: torch.Tensor | None = None  # (B, L, H_kv * d)
    scores: torch.Tensor | None = None  # (B, L) attention of the last token to every position
    gathered: dict[str, Any] = field(default_factory=dict)  # layer inputs gathered at layer k, reused after it


def last_token_attention(attention: nn.Module, query: torch.Tensor, keys: torch.Tensor,
                         position_embeddings: tuple[torch.Tensor, torch.Tensor], last: torch.Tensor,
                         mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L) softmax attention of each row's last prompt token to every key, averaged over heads.

    query: (B, 1, H * d) q_proj output at `last`; keys: (B, L, H_kv * d) k_proj output; cos / sin:
    (B or 1, L, d); mask: (B, L) 2-D attention mask or None."""
    head_dim = attention.head_dim
    batch, length, _ = keys.shape
    q = query.view(batch, 1, -1, head_dim)
    k = keys.view(batch, length, -1, head_dim)
    if getattr(attention, "q_norm", None) is not None:  # Qwen3-style per-head norms come before the rotary
        q, k = attention.q_norm(q), attention.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, 1, d), (B, H_kv, L, d)
    rotary = _rotary(attention)
    cos, sin = _interleaved_mrope(attention, *position_embeddings)
    cos_last = gather_tokens(cos, last[:, None], dim=1)
    sin_last = gather_tokens(sin, last[:, None], dim=1)
    q, _ = rotary(q, q, cos_last, sin_last)
    k, _ = rotary(k, k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    logits = (q.float() @ k.float().transpose(-1, -2))[:, :, 0] * attention.scaling  # (B, H, L)
    allowed = torch.arange(length, device=keys.device)[None] <= last[:, None]  # causal: keys up to the query
    if mask is not None:
        allowed = allowed & mask.bool()
    return logits.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1).mean(dim=1)


def _interleaved_mrope(attention: nn.Module, cos: torch.Tensor,
                       sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin as (B, L, d). Older transformers releases (5.4, the lower bound) hand Qwen2-VL's layers M-RoPE's three
    position streams, (3, B, L, d), and interleave them inside the attention by `mrope_section`;
    newer ones interleave them in the rotary embedding. Both give the same (B, L, d)."""
    if cos.dim() != 4:
        return cos, sin
    sections = list(attention.config.rope_parameters["mrope_section"]) * 2
    def interleave(values: torch.Tensor) -> torch.Tensor:
        return torch.cat([part[i % 3] for i, part in enumerate(values.split(sections, dim=-1))], dim=-1)
    return interleave(cos), interleave(sin)


def _rotary(attention: nn.Module):
    """The attention's own `apply_rotary_pos_emb`; for Qwen2-VL on older releases (which only
    has the multimodal variant) the plain rotation on already-interleaved cos / sin."""
    module = sys.modules[type(attention).__module__]
    if hasattr(module, "apply_rotary_pos_emb"):
        return module.apply_rotary_pos_emb
    rotate_half = module.rotate_half

    def apply(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    return apply


def _mask_columns(mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A 4-D mask (bool: True = attend, or additive float) with the first real.shape[1] key columns
    closed where `real` (B, L') is False (filler positions)."""
    closed = torch.zeros(mask.shape[0], mask.shape[-1], dtype=torch.bool, device=mask.device)
    closed[:, :real.shape[1]] = ~real
    if mask.dtype == torch.bool:
        return mask & ~closed[:, None, None, :]
    return mask.masked_fill(closed[:, None, None, :], torch.finfo(mask.dtype).min)


class InLanguageModelPruning:
    """The hooks of fastv-style pruning on one decoder's layers."""

    def __init__(self, patch: "TokenPruningPatch", decoder: nn.Module, layer: int):
        layers = decoder.layers
        if not 1 <= layer < len(layers):
            raise ValueError(f"layer (fastv) must be in 1..{len(layers) - 1} for this model's {len(layers)} "
                             f"language-model layers, got {layer}")
        implementation = patch.family.config.get_text_config()._attn_implementation
        if implementation not in SUPPORTED_ATTENTION:
            raise ValueError(f"fastv gathers the 4-D attention masks of {', '.join(SUPPORTED_ATTENTION)} attention; "
                             f"this model uses {implementation!r}: load it with attn_implementation='sdpa'")
        self.patch = patch
        self.layer = layer
        attention = layers[layer - 1].self_attn
        self.handles = [
            attention.register_forward_pre_hook(self._attention_inputs, with_kwargs=True),
            attention.q_proj.register_forward_hook(self._query),
            attention.k_proj.register_forward_hook(self._keys),
            attention.register_forward_hook(partial(self._score, attention)),
        ]
        for index in range(layer, len(layers)):
            self.handles.append(layers[index].register_forward_pre_hook(partial(self._layer_inputs, index),
                                                                        with_kwargs=True))

    def _scoring(self) -> Scoring | None:
        forward = self.patch.forward_state
        if forward is None or not forward.in_decoder or forward.phase != "prefill":
            return None
        return forward.scoring

    def _attention_inputs(self, module, args, kwargs) -> None:
        if (scoring := self._scoring()) is not None:
            scoring.position_embeddings = kwargs["position_embeddings"]
            scoring.capturing = True

    def _query(self, module, args, output: torch.Tensor) -> None:
        if (scoring := self._scoring()) is not None and scoring.capturing:
            scoring.query = gather_tokens(output, scoring.last[:, None], dim=1)

    def _keys(self, module, args, output: torch.Tensor) -> None:
        if (scoring := self._scoring()) is not None and scoring.capturing:
            scoring.keys = output

    def _score(self, attention: nn.Module, module, args, output) -> None:
        if (scoring := self._scoring()) is None or not scoring.capturing:
            return
        scoring.scores = last_token_attention(attention, scoring.query, scoring.keys, scoring.position_embeddings,
                                              scoring.last, scoring.mask)
        scoring.capturing, scoring.query, scoring.keys, scoring.position_embeddings = False, None, None, None

    def _layer_inputs(self, index: int, module, args, kwargs):
        forward, session = self.patch.forward_state, self.patch.session
        if forward is None or not forward.in_decoder or session is None or session.stage != "in_lm":
            return None
        if forward.phase == "prefill" and forward.scoring is not None:
            scoring = forward.scoring
            hidden = args[0] if args else kwargs["hidden_states"]
            if index == self.layer:
                session.kept, session.real = self.patch.select_in_lm(scoring, hidden)
                scoring.gathered = self._gather_prefill(kwargs, session.kept, session.real)
                hidden = gather_tokens(hidden, session.kept, dim=1)
            kwargs = {**kwargs, **scoring.gathered}
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}
        if forward.phase == "decode" and session.kept is not None:
            if index == self.layer:
                hidden = args[0] if args else kwargs["hidden_states"]
                forward.decode_mask = self._gather_decode_mask(kwargs.get("attention_mask"), session, hidden,
                                                               kwargs.get("cache", kwargs.get("past_key_values")))
            return args, {**kwargs, "attention_mask": forward.decode_mask}
        return None

    @staticmethod
    def _gather_prefill(kwargs: dict[str, Any], kept: torch.Tensor, real: torch.Tensor | None) -> dict[str, Any]:
        gathered: dict[str, Any] = {}
        cos, sin = kwargs["position_embeddings"]
        token_dim = cos.dim() - 2  # (B, L, d), or (3, B, L, d): M-RoPE's streams on older releases
        gathered["position_embeddings"] = (gather_tokens(cos, kept, dim=token_dim, batch_dim=token_dim - 1),
                                           gather_tokens(sin, kept, dim=token_dim, batch_dim=token_dim - 1))
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            if mask.dim() != 4:
                raise ValueError("fastv needs the 4-D attention mask of sdpa / eager attention, got shape "
                                 f"{tuple(mask.shape)}")
            mask = gather_tokens(gather_tokens(mask, kept, dim=2), kept, dim=3)
        elif mask is not None:
            raise ValueError(f"fastv cannot gather a {type(mask).__name__} attention mask; use sdpa or eager attention")
        elif real is not None:  # sdpa ran without a mask (is_causal); fillers need one
            length = kept.shape[1]
            mask = torch.ones(length, length, dtype=torch.bool, device=kept.device).tril()[None, None]
            mask = mask.expand(kept.shape[0], 1, length, length)
        if mask is not None:
            gathered["attention_mask"] = mask if real is None else _mask_columns(mask, real)
        positions = kwargs.get("position_ids")
        if isinstance(positions, torch.Tensor):
            gathered["position_ids"] = gather_tokens(positions, kept, dim=positions.dim() - 1,
                                                     batch_dim=positions.dim() - 2)
        return gathered

    @staticmethod
    def _gather_decode_mask(mask: Any, session, hidden: torch.Tensor, cache: Any) -> torch.Tensor | None:
        if mask is None:
            if session.real is None:
                return None  # sdpa attends to the whole (shorter) cache of these layers
            keys = cache.get_seq_length() + hidden.shape[1]  # layer 0 holds every position
            mask = torch.ones(hidden.shape[0], 1, hidden.shape[1], keys, dtype=torch.bool, device=hidden.device)
        if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
            raise ValueError("fastv needs the 4-D attention mask of sdpa / eager attention in decode steps, got "
                             f"{type(mask).__name__}{tuple(mask.shape) if isinstance(mask, torch.Tensor) else ''}")
        keys = mask.shape[-1]
        rest = torch.arange(session.prompt_length, keys, device=mask.device).expand(session.kept.shape[0], -1)
        mask = gather_tokens(mask, torch.cat([session.kept, rest], dim=1), dim=3)
        return mask if session.real is None else _mask_columns(mask, session.real)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
