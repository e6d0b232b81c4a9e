"""Tiny configs shared by the model tests (no hub, built from configs)."""

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel


def tiny_dense_dit(seed: int = 0) -> DiTTransformer2DModel:
    """A 2-layer DiT like a converted checkpoint: one embedder copied into every block, non-zero adaLN."""
    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000)
    with torch.no_grad():
        for block in dit.transformer_blocks:
            block.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
            block.norm1.linear.weight.normal_(0, 0.05)
            block.norm1.linear.bias.normal_(0, 0.05)
    return dit.eval()


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=4, layers_per_block=1, sample_size=16).eval()


def run_dit_pipeline(transformer: torch.nn.Module, guidance_scale: float = 4.0):
    pipe = DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe(class_labels=[1, 7], num_inference_steps=2, guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(0), output_type="np").images


def randomise_zero_parameters(module: torch.nn.Module, std: float = 0.05) -> None:
    with torch.no_grad():
        for param in module.parameters():
            if torch.all(param == 0):
                param.normal_(0, std)
