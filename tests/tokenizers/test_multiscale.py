"""MultiScaleTokenizer: scale-causal attention, both modes' round trips, the AutoencoderKL interface."""

import pytest
import torch

from genaccel.tokenizers import FSQ, MultiScaleTokenizer, scale_causal_mask

SMALL = dict(image_size=16, patch_size=2, width=32, heads=2, encoder_depth=1, scale_depth=2, decoder_depth=1,
             scales=(1, 2, 4, 8), latent_channels=4)


def tokenizer(**overrides):
    torch.manual_seed(0)
    return MultiScaleTokenizer(**{**SMALL, **overrides}).eval()


def images(batch=2, seed=1):
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_mask_lets_a_token_see_its_own_and_coarser_scales_only():
    mask = scale_causal_mask((1, 2))
    assert mask.shape == (5, 5)
    assert mask[0].tolist() == [True, False, False, False, False]
    assert mask[1:].all()


def test_coarse_scale_outputs_do_not_change_when_only_finer_inputs_change():
    model = tokenizer()
    with torch.no_grad():
        tokens = model.multi_scale_tokens(model.token_map(images()))
        changed = tokens.clone()
        changed[:, 1 + 4:] += torch.randn_like(changed[:, 1 + 4:])  # scales 4 and 8 only
        before, after = model.scale_transformer(tokens), model.scale_transformer(changed)
    coarse = 1 + 4
    torch.testing.assert_close(after[:, :coarse], before[:, :coarse], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, coarse:], before[:, coarse:], atol=1e-3)


def test_continuous_interface_is_autoencoder_kl_shaped():
    model = tokenizer()
    x = images()
    with torch.no_grad():
        posterior = model.encode(x).latent_dist
        z = posterior.mode()
        assert z.shape == (2, 4, 8, 8) and posterior.sample(torch.Generator().manual_seed(0)).shape == z.shape
        assert model.decode(z).sample.shape == x.shape
        torch.testing.assert_close(model(x).sample, model.decode(z).sample)
        (z_tuple,) = model.encode(x, return_dict=False)
    assert torch.equal(z_tuple.mode(), z) and model.config.scaling_factor == 1.0
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        model.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 4, 8, 8\)"):
        model.decode(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="discrete"):
        model.tokenize(x)


def test_discrete_codes_round_trip_to_the_same_image():
    model = tokenizer(quantizer="fsq", fsq_levels=(8, 5, 5, 5))
    x = images()
    with torch.no_grad():
        codes = model.tokenize(x)
        assert [tuple(c.shape) for c in codes] == [(2, 1, 1), (2, 2, 2), (2, 4, 4), (2, 8, 8)]
        assert all(c.dtype == torch.int64 and 0 <= int(c.min()) and int(c.max()) < 1000 for c in codes)
        assert model.tokens_per_scale == [1, 4, 16, 64]
        torch.testing.assert_close(model.detokenize(codes), model(x).sample, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one code map per scale"):
        model.detokenize(codes[:2])


def test_fsq_codes_are_a_bijection_on_the_grid_and_gradients_pass_straight_through():
    fsq = FSQ((8, 5, 3))
    assert fsq.codebook_size == 120
    every = torch.arange(120)
    assert torch.equal(fsq.codes(fsq.from_codes(every)), every)
    z = torch.randn(64, 3, requires_grad=True)
    quantized = fsq(z)
    assert torch.equal(fsq.from_codes(fsq.codes(quantized)), quantized.detach())
    assert len({tuple(row) for row in fsq.from_codes(every).tolist()}) == 120
    quantized.sum().backward()
    assert (z.grad != 0).all()
    with pytest.raises(ValueError, match=">= 2"):
        FSQ((1, 4))
    with pytest.raises(ValueError, match=r"\[0, 120\)"):
        fsq.from_codes(torch.tensor([120]))


def test_single_scale_twin_has_the_same_parameter_count_within_ten_percent():
    multi, single = tokenizer(), tokenizer(scales=(8,))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert abs(count(multi) - count(single)) / count(single) < 0.10
    assert single.tokens_per_scale == [64]


def test_save_and_load_are_bitwise(tmp_path):
    model = tokenizer(quantizer="fsq", fsq_levels=(8, 5, 5, 5))
    model.save_pretrained(tmp_path)
    loaded = MultiScaleTokenizer.from_pretrained(tmp_path).eval()
    assert loaded.scales == (1, 2, 4, 8)
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x).sample, model(x).sample)
        assert all(torch.equal(a, b) for a, b in zip(loaded.tokenize(x), model.tokenize(x)))


@pytest.mark.parametrize("overrides, message", [
    (dict(scales=(1, 2, 4)), "rise strictly from >= 1 to the token map's side 8"),
    (dict(scales=(2, 1, 8)), "rise strictly"),
    (dict(quantizer="vq"), "quantizer must be one of"),
    (dict(quantizer="fsq", fsq_levels=(8, 5)), "one level count per latent channel"),
    (dict(image_size=15), "divisible by patch_size"),
])
def test_bad_configs_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        MultiScaleTokenizer(**{**SMALL, **overrides})


def test_continuous_tokenizer_is_the_vae_of_a_diffusers_dit_pipeline():
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                        num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    pipe = DiTPipeline(transformer=transformer, vae=tokenizer(), scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(class_labels=[1, 3], num_inference_steps=2, guidance_scale=1.0, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (2, 16, 16, 3) and 0 <= out.min() and out.max() <= 1
