"""The cost model behind `SparsityPlan.expected_speedup`: modelled FLOPs of one transformer call.

Per image token, every weight of the transformer is used once (2 FLOPs per parameter: projections,
MLPs, norms, embeddings; an upper bound for the few that act per call, not per token), and each
attention block adds 4 * keys * width FLOPs (q.k and p.v over the keys the query attends: the
whole grid dense, its window plus one proxy per window for proxy attention, padding included). A
block that reuses its previous step's output (`skipped`) costs neither its attention nor its own
weights that step. Text tokens of joint-attention models are not counted. The model is a guide for the search; measured
speed is what `genaccel bench` reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Sequence

import torch

from genaccel.attention.partition import keys_per_query
from genaccel.config import SparseAttentionConfig


def attention_width(module: torch.nn.Module) -> int:
    """Width of the queries of a diffusers attention module (heads x head dim)."""
    to_q = getattr(module, "to_q", None)
    if isinstance(to_q, torch.nn.Linear):
        return to_q.out_features
    width = getattr(module, "inner_dim", None)
    if not isinstance(width, int):
        raise TypeError(f"cannot read the attention width of {type(module).__name__} (no to_q Linear, no inner_dim)")
    return width


@dataclass(frozen=True)
class CostModel:
    """FLOPs of one call of a transformer at `grid`, given one attention choice per block."""

    grid: tuple[int, ...]
    linear_flops_per_token: float
    attention_widths: tuple[int, ...]  # one per attention block, in block order
    attention_parameters: tuple[int, ...] = ()  # weights of each attention module (empty: not known)

    def __post_init__(self) -> None:
        if self.attention_parameters and len(self.attention_parameters) != len(self.attention_widths):
            raise ValueError(f"{len(self.attention_parameters)} attention_parameters for "
                             f"{len(self.attention_widths)} attention blocks")

    @classmethod
    def of(cls, transformer: torch.nn.Module, attention_modules: Sequence[torch.nn.Module],
           grid: tuple[int, ...]) -> "CostModel":
        parameters = sum(p.numel() for p in transformer.parameters())
        return cls(tuple(grid), 2.0 * parameters, tuple(attention_width(m) for m in attention_modules),
                   tuple(sum(p.numel() for p in m.parameters()) for m in attention_modules))

    @classmethod
    def of_transformer(cls, transformer: torch.nn.Module, grid: tuple[int, ...]) -> "CostModel":
        """The cost model of a supported diffusers transformer (its attention blocks in genaccel's order)."""
        from genaccel.api import _attention_modules, _unwrap
        from genaccel.attention.families import family_of

        transformer = _unwrap(transformer)
        modules = _attention_modules(transformer, family_of(transformer))
        return cls.of(transformer, [module for _, _, module in modules], grid)

    @property
    def tokens(self) -> int:
        return math.prod(self.grid)

    def attention_flops(self, block: int, choice: SparseAttentionConfig | None) -> float:
        if choice is None:
            keys = self.tokens
        else:
            keys = keys_per_query(choice.method, self.grid, choice.window_for(self.grid), choice.shifted(block))
        return 4.0 * self.tokens * keys * self.attention_widths[block]

    def call_flops(self, choices: Sequence[SparseAttentionConfig | None], skipped: Collection[int] = ()) -> float:
        """FLOPs of one call with `choices[b]` in block b (None: dense), the blocks in `skipped` reusing
        their previous output (no attention, no projections)."""
        if len(choices) != len(self.attention_widths):
            raise ValueError(f"{len(choices)} choices for {len(self.attention_widths)} attention blocks")
        total = self.tokens * self.linear_flops_per_token
        for block, choice in enumerate(choices):
            if block in skipped:
                total -= 2.0 * self.tokens * (self.attention_parameters[block] if self.attention_parameters else 0)
            else:
                total += self.attention_flops(block, choice)
        return total

    def speedup(self, choices: Sequence[SparseAttentionConfig | None]) -> float:
        """Modelled dense / sparse time of one call."""
        return self.call_flops([None] * len(self.attention_widths)) / self.call_flops(choices)

    def to_dict(self) -> dict:
        return {"grid": list(self.grid), "linear_flops_per_token": self.linear_flops_per_token,
                "attention_widths": list(self.attention_widths),
                "attention_parameters": list(self.attention_parameters)}

    @classmethod
    def from_dict(cls, data: dict) -> "CostModel":
        try:
            return cls(tuple(int(g) for g in data["grid"]), float(data["linear_flops_per_token"]),
                       tuple(int(w) for w in data["attention_widths"]),
                       tuple(int(p) for p in data.get("attention_parameters", ())))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"bad cost_model in plan (needs grid, linear_flops_per_token, attention_widths): "
                             f"{error}") from None
