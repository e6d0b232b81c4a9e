"""Multi-head attention projections shared by the blocks: q/k/v/out linears around any attention op.

The projections are separate from the attention pattern so one module serves dense attention,
window attention over a grid (`genaccel.attention.window_attention`) and cross-attention; the
linears are named like diffusers' `Attention` (to_q, to_k, to_v, to_out) so dense weights copy over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """q from `x` (dim), k / v from `context` (context_dim, default dim), output back to dim."""

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None, context_dim: int | None = None,
                 bias: bool = True, zero_init_output: bool = False) -> None:
        super().__init__()
        head_dim = head_dim or dim // num_heads
        if head_dim * num_heads == 0:
            raise ValueError(f"dim={dim} with num_heads={num_heads} leaves no channels per head")
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_out = nn.Linear(inner, dim)
        if zero_init_output:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of shape (B, heads, tokens, head_dim)."""
        context = x if context is None else context
        return self._split(self.to_q(x)), self._split(self.to_k(context)), self._split(self.to_v(context))

    def output(self, attended: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, head_dim) -> (B, N, dim)."""
        return self.to_out(attended.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Dense attention; `context_mask` (B, context tokens) bool, True = attend."""
        q, k, v = self.project(x, context)
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        return self.output(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
