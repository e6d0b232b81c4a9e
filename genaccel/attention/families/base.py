"""What a model family declares (classes, attention modules, token grid, processor) and the processor base.

A family file (one per diffusers transformer family) defines its `SparseProcessor` subclass and one
`ModelFamily` value; `families/__init__.py` lists them. Adding a family touches one file and that list.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from genaccel.attention.layout import LayoutState
from genaccel.attention.ops import joint_attention
from genaccel.attention.reuse import StepOutputs, StepReuse, unwrap
from genaccel.attention.ulysses import ulysses_attention
from genaccel.config import SparseAttentionConfig

GridReader = Callable[[Any, dict[str, Any]], tuple[int, ...]]  # (model config, forward inputs by name) -> grid


@dataclass(frozen=True)
class ModelFamily:
    """How one diffusers transformer family lays out its attention and its tokens."""

    name: str
    class_names: tuple[str, ...]  # diffusers model classes (subclasses are accepted too)
    attention_patterns: tuple[str, ...]  # module-name regexes; group 1 is the block index within that stack
    processor: type["SparseProcessor"]
    replaces: tuple[str, ...]  # diffusers processor classes the processor reimplements; others are left alone
    read_grid: GridReader
    grid_needs_data: bool = False  # the grid is read from tensor values (Flux's img_ids), not from shapes
    # for such families: patches a pipeline instance to record the grid as it prepares its latents
    record_grid: Callable[[Any, list[LayoutState]], Any] | None = None

    def classes(self) -> tuple[type, ...]:
        diffusers = importlib.import_module("diffusers")
        return tuple(getattr(diffusers, name) for name in self.class_names if hasattr(diffusers, name))


_REINSTANTIATED = ("genaccel sparse attention is applied to this model, and something tried to build a new "
                   "{cls} with no arguments (diffusers' load_ip_adapter / set_attn_processor do that). "
                   "Call genaccel.remove(pipe) first, load the adapter or processors, then genaccel.apply again.")


class SparseProcessor:
    """Common part of the family processors: when to stay dense, and the sparse call on (B, heads, S, D).

    It keeps the processor it replaced (`original`) and calls it unchanged on dense steps. `config` is
    one sparse config, or (for a `SparsityPlan`) one choice per step range, None meaning dense there,
    a `StepReuse` reusing the previous step's output on odd steps (subclasses decorate `__call__` with
    `reuse.step_reuse`); the state's `phase` says which range the current step is in.
    """

    # diffusers' enable_parallelism sets this on processors that declare it (context parallelism)
    _parallel_config = None

    def __init__(self, original=None,
                 config: SparseAttentionConfig | tuple[SparseAttentionConfig | None, ...] | None = None,
                 state: LayoutState | None = None, block_index: int | None = None):
        if original is None or config is None or state is None or block_index is None:
            raise TypeError(_REINSTANTIATED.format(cls=type(self).__name__))
        self.original = original
        self.choices = config if isinstance(config, tuple) else (config,)
        self.state = state
        self.block_index = block_index
        self.step_outputs = StepOutputs() if any(isinstance(c, StepReuse) for c in self.choices) else None

    def raw_choice(self):
        """This step's plan choice as given (a config, None, or a StepReuse)."""
        return self.choices[self.state.phase] if len(self.choices) > 1 else self.choices[0]

    def current(self) -> SparseAttentionConfig | None:
        """The sparse config this step computes with, or None where the block is dense."""
        return unwrap(self.raw_choice())

    def dense_now(self) -> bool:
        return self.state.dense or self.current() is None

    def context_parallel(self):
        """diffusers' ContextParallelConfig when the model runs under context parallelism, else None."""
        return getattr(self._parallel_config, "context_parallel_config", None)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text_len: int,
               text_first: bool) -> torch.Tensor:
        """Sparse attention over this call's [text | image] (or [image | text]) tokens: (B, heads, S, D).

        Under Ulysses context parallelism the inputs are this rank's tokens and `text_len` its text tokens.
        """
        grid = self.state.grid
        if grid is None:
            raise RuntimeError("genaccel: no token grid recorded; call the transformer itself (its forward "
                               "pre-hook records the grid), not the attention module alone")

        config = self.current()

        def over_all_tokens(q, k, v, text_len):
            return joint_attention(q, k, v, grid, config.window_for(grid), method=config.method,
                                   text_len=text_len, text_first=text_first,
                                   shift=config.shifted(self.block_index), backend=config.backend)

        context_parallel = self.context_parallel()
        if context_parallel is None:
            return over_all_tokens(query, key, value, text_len)
        return ulysses_attention(over_all_tokens, query, key, value, text_len, text_first, context_parallel)

    def image_tokens(self) -> int:
        """Image tokens this call (this rank, under context parallelism) holds."""
        grid = self.state.grid
        if grid is None:
            return 0
        context_parallel = self.context_parallel()
        return math.prod(grid) // (context_parallel.ulysses_degree if context_parallel is not None else 1)

    @staticmethod
    def reject_mask(attention_mask) -> None:
        if attention_mask is not None:
            raise ValueError("genaccel sparse attention does not take an attention_mask on self-attention; "
                             "remove the mask or keep this block dense (dense_blocks=...)")


def heads_qkv(attn, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def projections(attn, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v projections of an `AttentionModuleMixin` module (Flux, Wan), fused or not: (B, S, inner)."""
    if getattr(attn, "fused_projections", False):
        return attn.to_qkv(hidden_states).chunk(3, dim=-1)
    return attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)


def merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(B, heads, S, D) -> (B, S, heads * D)."""
    return out.transpose(1, 2).flatten(2, 3)


def image_grid(hidden_states: torch.Tensor, patch: int) -> tuple[int, int]:
    """(height, width) in tokens of a (..., H, W) latent patchified by `patch`."""
    height, width = hidden_states.shape[-2:]
    return (int(height) // patch, int(width) // patch)
