"""PT-DiT block (Qihoo-T2X): proxy-token attention + window / shifted-window attention + FFN.

In order, every block:
1. proxies = mean of each window's (modulated, normalised) tokens; the proxies self-attend (own weights);
2. all tokens cross-attend to the proxies (zero-initialised output linear): global mixing through
   one token per window;
3. window attention (adaLN-Zero gated, the branch that holds a dense DiT's attention weights);
4. shifted-window attention (half-window Swin shift, zero-initialised output linear);
5. text cross-attention when `cross_attention_dim` is set (class conditioning enters through adaLN);
6. FFN (adaLN-Zero gated).
One linear predicts all modulations from the conditioning vector (B, dim), DiT's first six chunks
first (window shift / scale / gate, FFN shift / scale / gate), then (shift, scale) for the proxy
and shifted-window branches. Branches with a zero-initialised output are not gated: a zero gate
in front of a zero output would receive no gradient.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from genaccel.attention import window_attention
from genaccel.attention.partition import normalize_window, window_partition

from .adaln import check_block_inputs, modulate
from .attention_layers import MultiHeadAttention


def window_means(tokens: torch.Tensor, grid: tuple[int, ...], window: tuple[int, ...]) -> torch.Tensor:
    """(B, N, C) -> (B, num_windows, C): the mean of each (unshifted) window's real tokens."""
    part = window_partition(tuple(grid), tuple(window), False, tokens.device)
    sums = tokens.new_zeros(tokens.shape[0], part.num_windows, tokens.shape[2]).index_add(1, part.token_window, tokens)
    return sums / part.counts.to(tokens.dtype)[None, :, None]


class PTDiTBlock(nn.Module):
    """Tokens (B, N, dim) on a (h, w) or (t, h, w) grid, conditioned on a (B, dim) vector."""

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None,
                 window: int | tuple[int, ...] = 2, cross_attention_dim: int | None = None,
                 activation_fn: str = "gelu-approximate", attention_bias: bool = True,
                 norm_eps: float = 1e-5, attention_backend: str = "auto") -> None:
        super().__init__()
        self.window, self.attention_backend = window, attention_backend
        attn = lambda **kw: MultiHeadAttention(dim, num_heads, head_dim, bias=attention_bias, **kw)  # noqa: E731
        plain_norm = lambda: nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)  # noqa: E731
        self.norm_proxy = plain_norm()
        self.norm_proxy_tokens = nn.LayerNorm(dim, eps=1e-6)
        self.proxy_self_attn = attn()
        self.proxy_cross_attn = attn(zero_init_output=True)
        self.norm_window = plain_norm()
        self.window_attn = attn()
        self.norm_shifted = plain_norm()
        self.shifted_window_attn = attn(zero_init_output=True)
        self.cross_attn = None
        if cross_attention_dim is not None:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross_attn = attn(context_dim=cross_attention_dim)
        self.norm_ff = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.ff = FeedForward(dim, activation_fn=activation_fn)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 10 * dim))
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.adaln[1].bias)

    def _windowed(self, attn: MultiHeadAttention, x: torch.Tensor, grid: tuple[int, ...], shift: bool) -> torch.Tensor:
        q, k, v = attn.project(x)
        return attn.output(window_attention(q, k, v, grid, self.window, shift, backend=self.attention_backend))

    def forward(self, hidden_states: torch.Tensor, conditioning: torch.Tensor, grid: tuple[int, ...],
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        grid = check_block_inputs(hidden_states, grid, self.cross_attn is not None, encoder_hidden_states)
        mods = self.adaln(conditioning).chunk(10, dim=1)
        x = hidden_states
        tokens = modulate(self.norm_proxy(x), mods[6], mods[7])
        proxies = window_means(tokens, grid, normalize_window(grid, self.window))
        proxies = proxies + self.proxy_self_attn(self.norm_proxy_tokens(proxies))
        x = x + self.proxy_cross_attn(tokens, proxies)
        x = x + mods[2][:, None] * self._windowed(self.window_attn, modulate(self.norm_window(x), mods[0], mods[1]), grid, False)
        x = x + self._windowed(self.shifted_window_attn, modulate(self.norm_shifted(x), mods[8], mods[9]), grid, True)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), encoder_hidden_states, encoder_attention_mask)
        x = x + mods[5][:, None] * self.ff(modulate(self.norm_ff(x), mods[3], mods[4]))
        return x
