"""HieraTok-style multi-scale ViT tokenizer, continuous (an AutoencoderKL drop-in) or discrete (FSQ).

The design as built (the paper has no public code; ANCHORS.md §5):

    image (B, 3, S, S)
      -> patch embedding (patch p) + ViT encoder blocks            -> token map (B, D, m, m), m = S / p
      -> multi-scale downsampling: area-average the map to s x s for every s in `scales` (coarse to
         fine, the last is m), each plus a learned scale embedding and its own position embedding
      -> one sequence of sum(s^2) tokens through transformer blocks with **scale-causal attention**:
         a token attends every token of its own scale and of coarser scales, none of finer ones
      -> per scale, a linear head to the latent channels; the latent map is the sum over scales of
         each scale's output upsampled (nearest) to m x m: coarse scales carry global content,
         finer ones add detail (VAR's sum of upsampled scales)
      -> ViT decoder blocks on the m x m latent tokens -> pixels (linear unpatchify).

Continuous mode: the heads give mean and log-variance, so `encode(x).latent_dist` is diffusers'
`DiagonalGaussianDistribution` over (B, C, m, m) and `decode(z).sample` the image: a pipeline can
use it as its `vae` (with `config.scaling_factor`). Discrete mode (`quantizer="fsq"`): each scale's
output is quantized with FSQ before the sum; `tokenize(x)` returns one integer map (B, s, s) per
scale, coarse to fine, and `detokenize(codes)` the image. `scales=(m,)` is the single-scale twin:
the same modules and parameter count up to the scale embeddings.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from genaccel.blocks.attention_layers import MultiHeadAttention
from genaccel.tokenizers.fsq import FSQ

QUANTIZERS = (None, "fsq")


class TransformerBlock(nn.Module):
    """Pre-norm ViT block (attention + GELU MLP) whose attention takes an optional boolean mask."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.attn.project(self.norm1(x))
        x = x + self.attn.output(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        return x + self.mlp(self.norm2(x))


def scale_causal_mask(scales: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """(L, L) boolean mask, True = may attend: query of scale i sees keys of scales <= i."""
    index = torch.cat([torch.full((s * s,), k, device=device) for k, s in enumerate(scales)])
    return index[:, None] >= index[None, :]


class MultiScaleTokenizer(ModelMixin, ConfigMixin):
    """Multi-scale ViT tokenizer with scale-causal attention (see the module docstring for the design)."""

    @register_to_config
    def __init__(self, image_size: int = 32, in_channels: int = 3, patch_size: int = 4, width: int = 128,
                 heads: int = 4, encoder_depth: int = 2, scale_depth: int = 2, decoder_depth: int = 2,
                 scales: Sequence[int] = (1, 2, 4, 8), latent_channels: int = 4, quantizer: str | None = None,
                 fsq_levels: Sequence[int] = (8, 5, 5, 5), scaling_factor: float = 1.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        side = image_size // patch_size
        scales = tuple(int(s) for s in scales)
        if not scales or list(scales) != sorted(set(scales)) or scales[-1] != side or scales[0] < 1:
            raise ValueError(f"scales must rise strictly from >= 1 to the token map's side {side} "
                             f"(image_size / patch_size), got {scales}")
        if quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
        if quantizer == "fsq" and len(fsq_levels) != latent_channels:
            raise ValueError(f"fsq_levels ({len(fsq_levels)} of them) must give one level count per latent "
                             f"channel ({latent_channels})")
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.side, self.scales = side, scales
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.encoder_pos = nn.Parameter(torch.randn(1, side * side, width) * 0.02)
        self.encoder = nn.ModuleList(TransformerBlock(width, heads) for _ in range(encoder_depth))
        self.scale_embed = nn.Parameter(torch.randn(len(scales), width) * 0.02)
        self.scale_pos = nn.ParameterList(nn.Parameter(torch.randn(1, s * s, width) * 0.02) for s in scales)
        self.scale_blocks = nn.ModuleList(TransformerBlock(width, heads) for _ in range(scale_depth))
        self.scale_norm = nn.LayerNorm(width)
        moments = latent_channels * (1 if quantizer else 2)  # continuous: mean and log-variance
        self.to_latent = nn.Linear(width, moments)
        self.quantize = FSQ(fsq_levels) if quantizer == "fsq" else None
        self.from_latent = nn.Linear(latent_channels, width)
        self.decoder_pos = nn.Parameter(torch.randn(1, side * side, width) * 0.02)
        self.decoder = nn.ModuleList(TransformerBlock(width, heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(width)
        self.to_pixels = nn.Linear(width, in_channels * patch_size * patch_size)
        self.register_buffer("_mask", scale_causal_mask(scales), persistent=False)

    # ---------------------------------------------------------------------------------- pieces

    def _check_images(self, x: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.in_channels
        if x.dim() != 4 or x.shape[1] != channels or x.shape[2:] != (size, size):
            raise ValueError(f"expected images of shape (B, {channels}, {size}, {size}) in [-1, 1], "
                             f"got {tuple(x.shape)}")

    def token_map(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder: images (B, C, S, S) -> token map (B, width, m, m)."""
        self._check_images(x)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.encoder_pos
        for block in self.encoder:
            tokens = block(tokens)
        return tokens.transpose(1, 2).unflatten(2, (self.side, self.side))

    def multi_scale_tokens(self, token_map: torch.Tensor) -> torch.Tensor:
        """The map area-averaged to every scale, coarse to fine: (B, sum(s^2), width)."""
        parts = []
        for k, s in enumerate(self.scales):
            pooled = F.adaptive_avg_pool2d(token_map, s).flatten(2).transpose(1, 2)
            parts.append(pooled + self.scale_embed[k] + self.scale_pos[k])
        return torch.cat(parts, dim=1)

    def scale_transformer(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scale-causal transformer over the multi-scale sequence (B, L, width) -> (B, L, width)."""
        for block in self.scale_blocks:
            tokens = block(tokens, self._mask)
        return self.scale_norm(tokens)

    def _sum_over_scales(self, per_token: torch.Tensor) -> torch.Tensor:
        """(B, L, C) values of the multi-scale sequence -> (B, C, m, m): each scale upsampled, summed."""
        total, start = 0, 0
        for s in self.scales:
            part = per_token[:, start:start + s * s].transpose(1, 2).unflatten(2, (s, s))
            total = total + F.interpolate(part, size=(self.side, self.side), mode="nearest")
            start += s * s
        return total

    def _scale_latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.scale_transformer(self.multi_scale_tokens(self.token_map(x))))

    # ------------------------------------------------------------------- AutoencoderKL interface

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """Images in [-1, 1] -> `latent_dist` over (B, latent_channels, m, m) (a point mass when discrete)."""
        moments = self._sum_over_scales(self._scale_latents(x)) if self.quantize is None else None
        if self.quantize is not None:
            quantized = self.quantize(self._scale_latents(x))
            mean = self._sum_over_scales(quantized)
            moments = torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)  # log-variance -30: deterministic
        distribution = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=distribution) if return_dict else (distribution,)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """Latents (B, latent_channels, m, m) -> images (B, C, S, S), roughly in [-1, 1]."""
        channels = self.config.latent_channels
        if z.dim() != 4 or z.shape[1:] != (channels, self.side, self.side):
            raise ValueError(f"expected latents of shape (B, {channels}, {self.side}, {self.side}), got {tuple(z.shape)}")
        tokens = self.from_latent(z.flatten(2).transpose(1, 2)) + self.decoder_pos
        for block in self.decoder:
            tokens = block(tokens)
        patches = self.to_pixels(self.decoder_norm(tokens))  # (B, m*m, C*p*p)
        p = self.config.patch_size
        image = patches.transpose(1, 2).reshape(z.shape[0], -1, self.side * self.side)
        image = F.fold(image, output_size=(self.config.image_size,) * 2, kernel_size=p, stride=p)
        return DecoderOutput(sample=image) if return_dict else (image,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False,
                generator: torch.Generator | None = None, return_posterior: bool = False
                ) -> DecoderOutput | tuple[DecoderOutput, DiagonalGaussianDistribution]:
        """Reconstruction: encode, take the mode (or a sample), decode; with `return_posterior` also the
        posterior (training needs its KL, and must go through forward for data-parallel gradients)."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator) if sample_posterior and self.quantize is None else posterior.mode()
        decoded = self.decode(z)
        return (decoded, posterior) if return_posterior else decoded

    # --------------------------------------------------------------------------- discrete tokens

    def tokenize(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Discrete mode: one integer code map (B, s, s) per scale, coarse to fine."""
        if self.quantize is None:
            raise ValueError("tokenize needs a discrete tokenizer (quantizer='fsq'); this one is continuous")
        codes = self.quantize.codes(self.quantize(self._scale_latents(x)))
        out, start = [], 0
        for s in self.scales:
            out.append(codes[:, start:start + s * s].unflatten(1, (s, s)))
            start += s * s
        return out

    def detokenize(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Images from `tokenize`'s code maps (one per scale, coarse to fine)."""
        if self.quantize is None:
            raise ValueError("detokenize needs a discrete tokenizer (quantizer='fsq'); this one is continuous")
        expected = [(s, s) for s in self.scales]
        if len(codes) != len(self.scales) or [tuple(c.shape[1:]) for c in codes] != expected:
            raise ValueError(f"expected one code map per scale of shapes (B, s, s) for s in {self.scales}, got "
                             f"{[tuple(c.shape) for c in codes]}")
        quantized = torch.cat([self.quantize.from_codes(c.flatten(1)) for c in codes], dim=1)
        return self.decode(self._sum_over_scales(quantized.to(self.to_pixels.weight.dtype))).sample

    @property
    def tokens_per_scale(self) -> list[int]:
        return [s * s for s in self.scales]
