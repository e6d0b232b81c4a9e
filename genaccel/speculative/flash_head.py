"""The FLASH draft head: one transformer block that proposes k future tokens in one pass.

Inputs, all from the target: its last hidden states h_i and the embeddings e of the tokens that
follow them, fused per position (f_i = W [h_i; e(t_{i+1})], as in EAGLE); and the last hidden
states of the visual span, attention-pooled by `num_queries` learned queries (576 -> 64 for
LLaVA-1.5). The newest fused position plus k learned slot embeddings form k queries that attend
to the pooled visual tokens, the last `context_window` fused positions and the earlier slots
(semi-autoregressive: slot j predicts token i + 2 + j without seeing slots' tokens). Slot outputs
go through the target's frozen LM head, which is not part of this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FlashConfig:
    hidden_size: int
    vocab_size: int
    target_model_type: str
    num_queries: int = 64
    draft_len: int = 4
    context_window: int = 16
    num_heads: int = 4
    intermediate_size: int | None = None

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        for name in ("num_queries", "draft_len", "context_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.intermediate_size is None:
            self.intermediate_size = 2 * self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Multi-head attention of queries over a separate key/value sequence, with a boolean mask."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, num_q, dim = queries.shape
        heads = self.num_heads
        q = self.query(queries).view(batch, num_q, heads, -1).transpose(1, 2)  # (B, H, Nq, d)
        k, v = self.key_value(memory).view(batch, memory.shape[1], 2, heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, Nq, d)
        return self.out(attended.transpose(1, 2).reshape(batch, num_q, dim))


class FlashHead(nn.Module):
    def __init__(self, config: FlashConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.fuse = nn.Linear(2 * dim, dim, bias=False)
        self.visual_queries = nn.Parameter(torch.randn(config.num_queries, dim) * 0.02)
        self.visual_norm = nn.RMSNorm(dim)
        self.visual_pool = Attention(dim, config.num_heads)
        self.context_positions = nn.Parameter(torch.randn(config.context_window, dim) * 0.02)
        self.slot_embeddings = nn.Parameter(torch.randn(config.draft_len, dim) * 0.02)
        self.attention_norm = nn.RMSNorm(dim)
        self.attention = Attention(dim, config.num_heads)
        self.mlp_norm = nn.RMSNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, config.intermediate_size), nn.SiLU(),
                                 nn.Linear(config.intermediate_size, dim))
        self.final_norm = nn.RMSNorm(dim)

    def pool_visual(self, visual_hidden: torch.Tensor) -> torch.Tensor:
        """(B, Nv, D) visual-span hidden states -> (B, num_queries, D); (B, 0, D) stays empty."""
        if visual_hidden.shape[1] == 0:
            return visual_hidden
        queries = self.visual_queries.expand(visual_hidden.shape[0], -1, -1).to(visual_hidden.dtype)
        return self.visual_pool(queries, self.visual_norm(visual_hidden))

    def forward(self, pooled_visual: torch.Tensor, context_hidden: torch.Tensor, context_embeds: torch.Tensor,
                context_valid: torch.Tensor) -> torch.Tensor:
        """Slot states (B, k, D) for the k tokens after the newest context position.

        pooled_visual (B, Q, D) (Q may be 0); context_hidden, context_embeds (B, W, D): target
        hidden state h_i and embedding of token i + 1 for the last W positions, oldest first;
        context_valid (B, W) bool (False for left padding). The newest position is the last one.
        """
        batch, window, _ = context_hidden.shape
        draft_len = self.config.draft_len
        fused = self.fuse(torch.cat([context_hidden, context_embeds], dim=-1))
        context = fused + self.context_positions[-window:]
        slots = fused[:, -1:] + self.slot_embeddings  # (B, k, D)
        normed = self.attention_norm(torch.cat([context, slots], dim=1))  # (B, W + k, D)
        memory = torch.cat([pooled_visual.to(normed.dtype), normed], dim=1)  # (B, Q + W + k, D)
        # Only the slots are queries: context positions serve as keys/values (their outputs would be unused).
        num_visual = pooled_visual.shape[1]
        causal = torch.ones(draft_len, draft_len, dtype=torch.bool, device=slots.device).tril()
        mask = torch.cat([torch.ones(batch, draft_len, num_visual, dtype=torch.bool, device=slots.device),
                          context_valid[:, None, :].expand(batch, draft_len, window),
                          causal.expand(batch, draft_len, draft_len)], dim=2)  # (B, k, Q + W + k)
        slots = slots + self.attention(normed[:, -draft_len:], memory, mask[:, None])
        slots = slots + self.mlp(self.mlp_norm(slots))
        return self.final_norm(slots)
