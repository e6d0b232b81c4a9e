"""LaMambaDiTModel: U-Net wiring, odd latents, pipeline, save/load, gradients, config errors."""

import pytest
import torch
from model_fixtures import randomise_zero_parameters, run_dit_pipeline

from genaccel.models import LaMambaDiTModel

TINY = dict(sample_size=8, block_out_channels=(16, 32, 32), layers_per_stage=(2, 1, 1), attention_head_dim=8,
            window_size=4)


def _model(**overrides) -> LaMambaDiTModel:
    torch.manual_seed(0)
    model = LaMambaDiTModel(**{**TINY, **overrides})
    randomise_zero_parameters(model)
    return model.eval()


def test_fresh_model_predicts_zero_and_has_the_unet_layout():
    torch.manual_seed(0)
    model = LaMambaDiTModel(**TINY, out_channels=8)
    assert len(model.down_stages) == len(model.up_stages) == 2 and len(model.mid_stage) == 1
    assert [b.shift for b in model.down_stages[0]] == [False, True]
    out = model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 4])).sample
    assert out.shape == (2, 8, 8, 8) and torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (5, 6)])
def test_odd_latent_sizes_run_and_every_parameter_gets_a_gradient(size):
    model = _model().train()
    out = model(torch.randn(2, 4, *size), torch.tensor([1, 500]), torch.tensor([3, 4])).sample
    assert out.shape == (2, 4, *size)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_skip_connections_carry_fine_detail():
    model = _model()
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([5]), torch.tensor([2])
    base = model(x, t, y).sample
    with torch.no_grad():
        model.skip_fuse[0].weight[:, 16:] = 0  # cut the finest skip connection
    assert not torch.allclose(model(x, t, y).sample, base)


def test_runs_in_dit_pipeline_with_learned_sigma_channels():
    images = run_dit_pipeline(_model(out_channels=8))
    assert images.shape == (2, 16, 16, 3)
    assert (images >= 0).all() and (images <= 1).all()


def test_save_load_round_trip_is_bitwise(tmp_path):
    model = _model(out_channels=8)
    model.save_pretrained(tmp_path)
    loaded = LaMambaDiTModel.from_pretrained(tmp_path).eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 900]), torch.tensor([0, 999])
    assert torch.equal(loaded(x, t, y).sample, model(x, t, y).sample)


def test_text_conditional_model():
    model = _model(num_embeds_ada_norm=None, cross_attention_dim=12)
    text, mask = torch.randn(2, 3, 12), torch.tensor([[True, True, False], [True, False, False]])
    out = model(torch.randn(2, 4, 8, 8), 10, encoder_hidden_states=text, encoder_attention_mask=mask).sample
    assert out.shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(torch.randn(2, 4, 8, 8), 10)


def test_dit_constructor_arguments_build_a_two_level_unet():
    # the keyword arguments genaccel.train's build_model passes to DiTTransformer2DModel
    common = dict(num_attention_heads=2, attention_head_dim=8, in_channels=3, out_channels=3, num_layers=5,
                  sample_size=8, patch_size=1, num_embeds_ada_norm=4)
    model = LaMambaDiTModel(**common)
    assert [len(s) for s in model.down_stages] == [1] and len(model.mid_stage) == 3
    assert model.patch_embed.out_channels == 16 and model.mid_stage[0].attn.num_heads == 4
    out = model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 4])).sample
    assert out.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="give block_out_channels or num_attention_heads"):
        LaMambaDiTModel(block_out_channels=(16, 32), num_attention_heads=2)
    with pytest.raises(ValueError, match="give layers_per_stage or num_layers"):
        LaMambaDiTModel(layers_per_stage=(1, 1), num_layers=4)
    shallow = LaMambaDiTModel(**{**common, "num_layers": 2})  # too shallow for a U-Net: one level
    assert len(shallow.down_stages) == 0 and len(shallow.mid_stage) == 2
    assert shallow(torch.randn(1, 3, 8, 8), 3, torch.tensor([1])).sample.shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="two levels need >= 3 blocks"):
        LaMambaDiTModel(block_out_channels=(16, 32), num_layers=2, attention_head_dim=8)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = _model().train()
        for module in model.modules():
            if hasattr(module, "dropout_prob"):
                module.dropout_prob = 0.0  # no random label dropout between the two runs
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(torch.ones(2, 4, 8, 8), torch.tensor([1, 500]), torch.tensor([3, 4])).sample.square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(*grads))


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="must be non-empty and of equal length"):
        LaMambaDiTModel(block_out_channels=(16, 32), layers_per_stage=(1,))
    with pytest.raises(ValueError, match="divisible by attention_head_dim=8"):
        LaMambaDiTModel(block_out_channels=(12, 32), layers_per_stage=(1, 1), attention_head_dim=8)
    with pytest.raises(ValueError, match="choose one conditioning"):
        LaMambaDiTModel(num_embeds_ada_norm=10, cross_attention_dim=12)
    model = _model(patch_size=2)
    with pytest.raises(ValueError, match="latent size 7x8 must be divisible by patch_size=2"):
        model(torch.randn(1, 4, 7, 8), 1, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"timestep must be a scalar or have shape \(batch,\)"):
        model(torch.randn(1, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([0]))
