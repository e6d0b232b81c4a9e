"""LaMamba block (LaMamba-Diff): adaLN-Zero SS2D branch -> window attention -> [text] -> MLP.

Three sequential residual branches, each `x + gate * branch(norm(x) * (1 + scale) + shift)` with
(shift, scale, gate) predicted from the conditioning vector by one zero-initialised linear, so a
fresh block is the identity. The SS2D branch mixes globally in linear time; the window attention
branch is Swin's (window 8, shifted by half a window in every other block, learned relative
position bias). With `cross_attention_dim` a text cross-attention branch (ungated, as in PixArt)
follows the window attention.
"""

from __future__ import annotations

import torch
from torch import nn

from genaccel.attention import window_attention
from genaccel.attention.partition import normalize_window

from .adaln import check_block_inputs, modulate
from .attention_layers import MultiHeadAttention
from .relative_position_bias import RelativePositionBias
from .ss2d import SS2D, SS3D


class LaMambaBlock(nn.Module):
    """Tokens (B, N, dim) on a 2-D (or, with `spatial_dims=3`, video) grid, conditioned on (B, cond_dim)."""

    def __init__(self, dim: int, num_heads: int, cond_dim: int, window: int | tuple[int, ...] = 8,
                 shift: bool = False, spatial_dims: int = 2, d_state: int = 1, ssm_expand: float = 2.0,
                 mlp_ratio: float = 4.0, relative_position_bias: bool = True,
                 cross_attention_dim: int | None = None, scan_backend: str = "auto",
                 attention_backend: str = "auto") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 (images) or 3 (video), got {spatial_dims}")
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.window = (window,) * spatial_dims if isinstance(window, int) else tuple(window)
        if len(self.window) != spatial_dims:
            raise ValueError(f"window {self.window} must have {spatial_dims} sizes")
        self.shift, self.attention_backend = shift, attention_backend
        self.norm_ssm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ssm = (SS2D if spatial_dims == 2 else SS3D)(dim, d_state=d_state, expand=ssm_expand,
                                                        scan_backend=scan_backend)
        self.norm_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.position_bias = RelativePositionBias(self.window, num_heads) if relative_position_bias else None
        self.cross_attn = None
        if cross_attention_dim is not None:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross_attn = MultiHeadAttention(dim, num_heads, context_dim=cross_attention_dim)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 9 * dim))
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.adaln[1].bias)

    def window_attention(self, x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        q, k, v = self.attn.project(x)
        bias = None if self.position_bias is None else self.position_bias(normalize_window(grid, self.window))
        out = window_attention(q, k, v, grid, self.window, self.shift, backend=self.attention_backend,
                               position_bias=bias)
        return self.attn.output(out)

    def forward(self, hidden_states: torch.Tensor, conditioning: torch.Tensor, grid: tuple[int, ...],
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        grid = check_block_inputs(hidden_states, grid, self.cross_attn is not None, encoder_hidden_states)
        mods = self.adaln(conditioning).chunk(9, dim=1)
        x = hidden_states
        x = x + mods[2][:, None] * self.ssm(modulate(self.norm_ssm(x), mods[0], mods[1]), grid)
        x = x + mods[5][:, None] * self.window_attention(modulate(self.norm_attn(x), mods[3], mods[4]), grid)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), encoder_hidden_states, encoder_attention_mask)
        x = x + mods[8][:, None] * self.mlp(modulate(self.norm_mlp(x), mods[6], mods[7]))
        return x
