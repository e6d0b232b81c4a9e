"""Diffusion training in a tokenizer's latent space (`TrainConfig.vae`) and the pipeline that decodes it."""

import json

import pytest
import torch

from genaccel.pipelines.class_conditional import ClassConditionalPipeline
from genaccel.tokenizers import MultiScaleTokenizer
from genaccel.train.diffusion import TrainConfig, encode_latents, load_vae, pipeline_from_checkpoint, train

TINY = dict(data="shapes", num_images=40, image_size=16, width=32, depth=1, heads=2, patch_size=1, batch_size=4,
            warmup_steps=2, log_every=1, sample_steps=2, guidance_scale=2.0, max_steps=3, checkpoint_every=3)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = MultiScaleTokenizer(image_size=16, patch_size=4, width=32, heads=2, encoder_depth=1, scale_depth=1,
                                    decoder_depth=1, scales=(1, 2, 4), latent_channels=4).eval()
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


def test_latent_run_trains_on_scaled_latents_and_its_pipeline_decodes_them(tmp_path, tokenizer_folder):
    config = TrainConfig(output_dir=str(tmp_path / "run"), vae=str(tokenizer_folder), **TINY)
    train(config)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-3" / "state.json").read_text())
    pipe = pipeline_from_checkpoint(tmp_path / "run" / "checkpoints" / "step-3")
    assert pipe.transformer.config.in_channels == 4 and pipe.transformer.config.sample_size == 4  # 16 px / 4
    # the scale is 1 / std of the training set's latents, kept on the pipeline's vae
    from genaccel.train.diffusion import load_training_data

    images, _, _ = load_training_data(config)
    latents = encode_latents(load_vae(config), images)
    assert state["latent_scaling_factor"] == pytest.approx(float(1 / latents.std()), rel=1e-5)
    assert pipe.vae.config.scaling_factor == state["latent_scaling_factor"]
    out = pipe([0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (2, 3, 16, 16)
    # the pipeline's images are the vae's decode of its final latents divided by the scale
    seen = []
    decode = pipe.vae.decode
    pipe.vae.decode = lambda z, **kwargs: seen.append(z) or decode(z, **kwargs)  # an instance attribute, this test only
    again = pipe([0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert torch.equal(again, out) and len(seen) == 1
    torch.testing.assert_close(again, (decode(seen[0]).sample / 2 + 0.5).clamp(0, 1))
    # what reaches decode is the denoised latent divided by scaling_factor: doubling the factor halves it
    scale = pipe.vae.config.scaling_factor
    pipe.vae.register_to_config(scaling_factor=2 * scale)
    pipe([0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    torch.testing.assert_close(seen[1] * 2, seen[0])


def test_mirrored_training_latents_are_the_mirrored_images_encoded(tokenizer_folder):
    config = TrainConfig(output_dir="unused", vae=str(tokenizer_folder), **TINY)
    vae = load_vae(config)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mirrored = encode_latents(vae, images.flip(-1))
    assert not torch.allclose(mirrored, encode_latents(vae, images).flip(-1))  # why hflip encodes twice
    torch.testing.assert_close(mirrored[1:2], encode_latents(vae, images[1:2].flip(-1)))


def test_the_pipeline_refuses_a_pixel_size_its_vae_does_not_make(tokenizer_folder):
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    vae = MultiScaleTokenizer.from_pretrained(tokenizer_folder)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                                        num_layers=1, sample_size=4, patch_size=1, num_embeds_ada_norm=3)
    pipe = ClassConditionalPipeline(transformer=transformer, scheduler=DDIMScheduler(), vae=vae)
    with pytest.raises(ValueError, match="makes 16 px images; image_size must be 16 or None, got 32"):
        pipe([0], num_inference_steps=1, image_size=32)


def test_a_vae_for_another_image_size_is_refused(tmp_path, tokenizer_folder):
    config = TrainConfig(output_dir=str(tmp_path), vae=str(tokenizer_folder), **dict(TINY, image_size=32))
    with pytest.raises(ValueError, match="takes 16 px images but image_size is 32"):
        load_vae(config)
