"""End to end through a real diffusers pipeline class (DiTPipeline) assembled from tiny components."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

import genaccel


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                        num_layers=2, sample_size=12, patch_size=2, num_embeds_ada_norm=1000)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, layers_per_block=1)
    pipe = DiTPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=DDIMScheduler(clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, steps=3):
    return pipe(class_labels=[1, 2], num_inference_steps=steps, guidance_scale=4.0, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_pipeline_apply_and_remove(pipe):
    dense = generate(pipe)
    genaccel.apply(pipe, genaccel.WindowAttentionConfig(window=(6, 6)))  # covers the 6 x 6 token grid
    np.testing.assert_allclose(generate(pipe), dense, atol=1e-5)
    genaccel.remove(pipe)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2), shift="alternate"))
    sparse = generate(pipe)
    assert sparse.shape == dense.shape and not np.allclose(sparse, dense, atol=1e-4)
    genaccel.remove(pipe)
    assert np.array_equal(generate(pipe), dense)


def test_dense_steps_over_real_pipeline_calls(pipe):
    dense_2, dense_4 = generate(pipe, steps=2), generate(pipe, steps=4)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2), dense_steps=2))
    try:
        for _ in range(2):  # every pipeline call restarts the step count
            assert np.array_equal(generate(pipe, steps=2), dense_2)
        assert not np.array_equal(generate(pipe, steps=4), dense_4)  # steps 3 and 4 were sparse
    finally:
        genaccel.remove(pipe)
