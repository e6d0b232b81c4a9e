"""PTDiTTransformer2DModel: a DiT whose blocks are PT-DiT blocks (proxy tokens + window attention).

A diffusers `ModelMixin` / `ConfigMixin` with DiT's call signature and output, so it runs in
diffusers' `DiTPipeline` in place of `DiTTransformer2DModel`. Class-conditional (`num_embeds_ada_norm`,
adaLN) or text-conditional (`cross_attention_dim`, cross-attention to projected text states).
`from_dense_dit` builds one from a dense `DiTTransformer2DModel`, copying every shared weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import PatchEmbed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

from genaccel.blocks.ptdit_block import PTDiTBlock

from .conditioning import TimestepConditioning, check_model_inputs


class PTDiTTransformer2DModel(ModelMixin, ConfigMixin):
    """Latent (B, in_channels, H, W) -> prediction (B, out_channels, H, W); see the module docstring.

    Takes `DiTTransformer2DModel`'s constructor arguments (`num_embeds_ada_norm` is the number of
    classes, as in DiT) plus `window_size`, `class_dropout_prob`, `cross_attention_dim`, `attention_backend`.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, sample_size: int = 32, patch_size: int = 2, in_channels: int = 4,
                 out_channels: int | None = None, num_layers: int = 28, num_attention_heads: int = 16,
                 attention_head_dim: int = 72, window_size: int | list[int] = 2,
                 num_embeds_ada_norm: int | None = 1000, class_dropout_prob: float = 0.1,
                 cross_attention_dim: int | None = None, activation_fn: str = "gelu-approximate",
                 attention_bias: bool = True, norm_eps: float = 1e-5, attention_backend: str = "auto") -> None:
        super().__init__()
        if num_embeds_ada_norm is not None and cross_attention_dim is not None:
            raise ValueError("choose one conditioning: num_embeds_ada_norm (number of classes) or cross_attention_dim "
                             "(text), not both")
        if out_channels is None:
            out_channels = in_channels
            self.register_to_config(out_channels=out_channels)
        dim = num_attention_heads * attention_head_dim
        window = tuple(window_size) if isinstance(window_size, (list, tuple)) else window_size
        self.pos_embed = PatchEmbed(height=sample_size, width=sample_size, patch_size=patch_size,
                                    in_channels=in_channels, embed_dim=dim)
        self.conditioning = TimestepConditioning(dim, num_embeds_ada_norm, class_dropout_prob)
        self.gradient_checkpointing = False
        self.caption_projection = None
        if cross_attention_dim is not None:
            self.caption_projection = nn.Sequential(nn.Linear(cross_attention_dim, dim), nn.GELU(approximate="tanh"),
                                                    nn.Linear(dim, dim))
        self.transformer_blocks = nn.ModuleList([
            PTDiTBlock(dim, num_attention_heads, attention_head_dim, window,
                       cross_attention_dim=None if cross_attention_dim is None else dim,
                       activation_fn=activation_fn, attention_bias=attention_bias, norm_eps=norm_eps,
                       attention_backend=attention_backend)
            for _ in range(num_layers)
        ])
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
                return_dict: bool = True, *, encoder_attention_mask: torch.Tensor | None = None
                ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        batch, _, height, width = hidden_states.shape
        p = self.config.patch_size
        check_model_inputs(hidden_states, p, self.config.cross_attention_dim, encoder_hidden_states)
        grid = (height // p, width // p)
        x = self.pos_embed(hidden_states)
        cond = self.conditioning(timestep, class_labels, batch, x.dtype, x.device)
        text = None if encoder_hidden_states is None else self.caption_projection(encoder_hidden_states)
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, cond, grid, text, encoder_attention_mask)
            else:
                x = block(x, cond, grid, text, encoder_attention_mask)
        shift, scale = self.proj_out_1(F.silu(cond)).chunk(2, dim=1)
        x = self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])
        out = x.reshape(batch, *grid, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(batch, -1, height, width)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    @classmethod
    def from_dense_dit(cls, dit: nn.Module, window_size: int | list[int] | None = None,
                       attention_backend: str = "auto") -> "PTDiTTransformer2DModel":
        """A PT-DiT holding a dense diffusers `DiTTransformer2DModel`'s weights; new branches start at zero.

        Copied: patch embedding, timestep / label embedding, each block's attention q/k/v/out into
        its window-attention branch, its FFN and its adaLN-Zero linear (the first six modulation
        chunks), and the final layer. The proxy cross-attention and shifted-window outputs are zero,
        so with `window_size=None` (one window covering the latent grid) the model computes exactly
        the dense DiT's function. With a smaller window the only change is that the copied attention
        sees its own window instead of the whole grid (the zero-initialised branches still add
        nothing): an approximation to fine-tune from, not an equal model.
        """
        cfg = dit.config
        if cfg.norm_type != "ada_norm_zero" or cfg.norm_elementwise_affine:
            raise ValueError("from_dense_dit expects a DiT with norm_type='ada_norm_zero' and "
                             f"norm_elementwise_affine=False, got {cfg.norm_type!r}, {cfg.norm_elementwise_affine}")
        embeddings = [block.norm1.emb.state_dict() for block in dit.transformer_blocks]
        if any(any(not torch.equal(t, first_t) for t, first_t in zip(e.values(), embeddings[0].values()))
               for e in embeddings[1:]):
            raise ValueError("the DiT's blocks have different timestep/label embeddings; PT-DiT shares one "
                             "embedding (as every converted DiT checkpoint does: they copy one embedder into each block)")
        grid = cfg.sample_size // cfg.patch_size
        model = cls(sample_size=cfg.sample_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
                    out_channels=dit.out_channels, num_layers=cfg.num_layers,
                    num_attention_heads=cfg.num_attention_heads, attention_head_dim=cfg.attention_head_dim,
                    window_size=grid if window_size is None else window_size,
                    num_embeds_ada_norm=cfg.num_embeds_ada_norm,
                    class_dropout_prob=dit.transformer_blocks[0].norm1.emb.class_embedder.dropout_prob,
                    activation_fn=cfg.activation_fn, attention_bias=cfg.attention_bias, norm_eps=cfg.norm_eps,
                    attention_backend=attention_backend)
        model.to(dtype=dit.dtype)
        with torch.no_grad():
            model.pos_embed.load_state_dict(dit.pos_embed.state_dict())
            model.conditioning.embed.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
            for ours, dense in zip(model.transformer_blocks, dit.transformer_blocks):
                for name in ("to_q", "to_k", "to_v"):
                    getattr(ours.window_attn, name).load_state_dict(getattr(dense.attn1, name).state_dict())
                ours.window_attn.to_out.load_state_dict(dense.attn1.to_out[0].state_dict())
                ours.ff.load_state_dict(dense.ff.state_dict())
                rows = dense.norm1.linear.weight.shape[0]
                ours.adaln[1].weight.zero_()
                ours.adaln[1].bias.zero_()
                ours.adaln[1].weight[:rows] = dense.norm1.linear.weight
                ours.adaln[1].bias[:rows] = dense.norm1.linear.bias
            model.proj_out_1.load_state_dict(dit.proj_out_1.state_dict())
            model.proj_out_2.load_state_dict(dit.proj_out_2.state_dict())
        return model.to(dit.device)
