"""LaMambaDiTModel: LaMamba-Diff's U-Net of LaMamba blocks (SS2D + window attention) for diffusion.

Tokens are latent pixels (patch size 1 by default) on a 2-D grid. Down stages run LaMamba blocks
then halve the grid (2x2 strided conv, channels to the next width); the middle stage runs at the
coarsest grid; up stages double the grid (2x2 transposed conv), concatenate the matching down
stage's output (skip connection), fuse with a linear and run their blocks. Inside each stage the
window attention alternates plain / shifted windows. Odd grids are padded by one row / column
before a downsample and cropped after the matching upsample.

A diffusers `ModelMixin` / `ConfigMixin` with DiT's call signature and output (runs in `DiTPipeline`):
class-conditional (`num_embeds_ada_norm` classes, adaLN) or text-conditional (`cross_attention_dim`,
cross-attention branch in every block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

from genaccel.blocks.lamamba_block import LaMambaBlock

from .conditioning import TimestepConditioning, check_model_inputs


def _to_map(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class LaMambaDiTModel(ModelMixin, ConfigMixin):
    """Latent (B, in_channels, H, W) -> prediction (B, out_channels, H, W); see the module docstring.

    Sizes: `block_out_channels` (one width per level, the last is the middle) and `layers_per_stage`
    (blocks per level; up stages mirror down stages). `DiTTransformer2DModel`'s arguments also work
    (`num_attention_heads` x `attention_head_dim` = first width, doubled at the second level;
    `num_layers` = total blocks, split into down / middle / up; fewer than 3 give one level without
    down / up sampling), but not together with those two.
    `num_embeds_ada_norm` is the number of classes, as in DiT.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, sample_size: int = 32, patch_size: int = 1, in_channels: int = 4,
                 out_channels: int | None = None, block_out_channels: list[int] | None = None,
                 layers_per_stage: list[int] | None = None, attention_head_dim: int = 32,
                 num_attention_heads: int | None = None, num_layers: int | None = None,
                 window_size: int = 8, d_state: int = 1, ssm_expand: float = 2.0, mlp_ratio: float = 4.0,
                 relative_position_bias: bool = True, num_embeds_ada_norm: int | None = 1000,
                 class_dropout_prob: float = 0.1, cross_attention_dim: int | None = None,
                 conditioning_dim: int | None = None, scan_backend: str = "auto",
                 attention_backend: str = "auto") -> None:
        super().__init__()
        widths, depths = stage_sizes(block_out_channels, layers_per_stage, attention_head_dim,
                                     num_attention_heads, num_layers)
        if num_embeds_ada_norm is not None and cross_attention_dim is not None:
            raise ValueError("choose one conditioning: num_embeds_ada_norm (number of classes) or cross_attention_dim "
                             "(text), not both")
        if out_channels is None:
            out_channels = in_channels
            self.register_to_config(out_channels=out_channels)
        cond_dim = conditioning_dim or max(widths)
        self.conditioning = TimestepConditioning(cond_dim, num_embeds_ada_norm, class_dropout_prob)
        self.gradient_checkpointing = False

        def stage(width: int, depth: int) -> nn.ModuleList:
            return nn.ModuleList([LaMambaBlock(
                width, width // attention_head_dim, cond_dim, window=window_size, shift=i % 2 == 1,
                d_state=d_state, ssm_expand=ssm_expand, mlp_ratio=mlp_ratio,
                relative_position_bias=relative_position_bias, cross_attention_dim=cross_attention_dim,
                scan_backend=scan_backend, attention_backend=attention_backend) for i in range(depth)])

        self.patch_embed = nn.Conv2d(in_channels, widths[0], patch_size, stride=patch_size)
        self.down_stages = nn.ModuleList([stage(w, d) for w, d in zip(widths[:-1], depths[:-1])])
        self.downsamples = nn.ModuleList([nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths[:-1], widths[1:])])
        self.mid_stage = stage(widths[-1], depths[-1])
        self.upsamples = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths[:-1], widths[1:])])
        self.skip_fuse = nn.ModuleList([nn.Linear(2 * w, w) for w in widths[:-1]])
        self.up_stages = nn.ModuleList([stage(w, d) for w, d in zip(widths[:-1], depths[:-1])])
        self.norm_out = nn.LayerNorm(widths[0], elementwise_affine=False, eps=1e-6)
        self.adaln_out = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * widths[0]))
        self.proj_out = nn.Linear(widths[0], patch_size * patch_size * out_channels)
        for layer in (self.adaln_out[1], self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _run_stage(self, blocks: nn.ModuleList, x: torch.Tensor, cond: torch.Tensor, grid: tuple[int, int],
                   text: torch.Tensor | None, text_mask: torch.Tensor | None) -> torch.Tensor:
        for block in blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, cond, grid, text, text_mask)
            else:
                x = block(x, cond, grid, text, text_mask)
        return x

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
                return_dict: bool = True, *, encoder_attention_mask: torch.Tensor | None = None
                ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        batch, _, height, width = hidden_states.shape
        p = self.config.patch_size
        check_model_inputs(hidden_states, p, self.config.cross_attention_dim, encoder_hidden_states)
        x = self.patch_embed(hidden_states)
        grid = tuple(x.shape[2:])
        x = _to_tokens(x)
        cond = self.conditioning(timestep, class_labels, batch, x.dtype, x.device)
        text = (encoder_hidden_states, encoder_attention_mask)
        skips = []
        for stage, down in zip(self.down_stages, self.downsamples):
            x = self._run_stage(stage, x, cond, grid, *text)
            skips.append((x, grid))
            fmap = F.pad(_to_map(x, grid), (0, grid[1] % 2, 0, grid[0] % 2))
            x = down(fmap)
            grid = tuple(x.shape[2:])
            x = _to_tokens(x)
        x = self._run_stage(self.mid_stage, x, cond, grid, *text)
        for stage, up, fuse in zip(reversed(self.up_stages), reversed(self.upsamples), reversed(self.skip_fuse)):
            skip, fine_grid = skips.pop()
            fmap = up(_to_map(x, grid))
            grid = fine_grid
            x = _to_tokens(fmap[:, :, :grid[0], :grid[1]])
            x = self._run_stage(stage, fuse(torch.cat([x, skip], dim=-1)), cond, grid, *text)
        shift, scale = self.adaln_out(cond).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])
        out = x.reshape(batch, *grid, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(batch, -1, height, width)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


def stage_sizes(block_out_channels: list[int] | None, layers_per_stage: list[int] | None, attention_head_dim: int,
                num_attention_heads: int | None, num_layers: int | None) -> tuple[list[int], list[int]]:
    """(widths, depths) per level from the U-Net arguments or from DiT's (heads, layers) arguments."""
    if block_out_channels is not None and num_attention_heads is not None:
        raise ValueError("give block_out_channels or num_attention_heads (DiT-style: first width = heads x "
                         "attention_head_dim), not both")
    if layers_per_stage is not None and num_layers is not None:
        raise ValueError("give layers_per_stage or num_layers (DiT-style: total blocks), not both")
    total = num_layers if num_layers is not None else 8
    if block_out_channels is None:
        first = (num_attention_heads or 4) * attention_head_dim
        block_out_channels = (first, 2 * first) if layers_per_stage is not None or total >= 3 else (first,)
    if layers_per_stage is None:
        if total < 1 or len(block_out_channels) > 2 or (len(block_out_channels) == 2 and total < 3):
            raise ValueError(f"num_layers={total} cannot be split over block_out_channels {list(block_out_channels)} "
                             "(two levels need >= 3 blocks: down, middle, up); pass layers_per_stage instead")
        down = max(1, total // 4)
        layers_per_stage = (total,) if len(block_out_channels) == 1 else (down, total - 2 * down)
    widths, depths = list(block_out_channels), list(layers_per_stage)
    if len(widths) != len(depths) or not widths:
        raise ValueError(f"block_out_channels {widths} and layers_per_stage {depths} must be non-empty and of "
                         "equal length (the last entry is the middle stage)")
    if any(w % attention_head_dim for w in widths):
        raise ValueError(f"every width in block_out_channels {widths} must be divisible by "
                         f"attention_head_dim={attention_head_dim}")
    return widths, depths
