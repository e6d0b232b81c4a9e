"""PTDiTTransformer2DModel: exact equality with the dense DiT it is built from, pipeline, save/load."""

import pytest
import torch
from model_fixtures import randomise_zero_parameters, run_dit_pipeline, tiny_dense_dit

from genaccel.models import PTDiTTransformer2DModel


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g, dtype=dtype), torch.tensor([3, 700]), torch.tensor([1, 999])


def test_from_dense_dit_with_full_grid_window_equals_dense_float64():
    dit = tiny_dense_dit().double()
    model = PTDiTTransformer2DModel.from_dense_dit(dit).eval()
    assert model.config.window_size == 4  # one window covers the 4x4 token grid
    x, t, y = _inputs(torch.float64)
    assert torch.allclose(model(x, t, y).sample, dit(x, t, y).sample, rtol=0, atol=1e-12)


def test_from_dense_dit_float32_and_smaller_window_is_an_approximation():
    dit = tiny_dense_dit()
    x, t, y = _inputs()
    dense = dit(x, t, y).sample
    assert torch.allclose(PTDiTTransformer2DModel.from_dense_dit(dit).eval()(x, t, y).sample, dense, atol=1e-5)
    windowed = PTDiTTransformer2DModel.from_dense_dit(dit, window_size=2).eval()(x, t, y).sample
    assert not torch.allclose(windowed, dense, atol=1e-3)  # each token now sees only its 2x2 window


def test_from_dense_dit_rejects_untied_embeddings():
    dit = tiny_dense_dit()
    with torch.no_grad():
        dit.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(1.0)
    with pytest.raises(ValueError, match="different timestep/label embeddings"):
        PTDiTTransformer2DModel.from_dense_dit(dit)


def test_runs_in_dit_pipeline_and_matches_the_dense_pipeline():
    dit = tiny_dense_dit()
    dense_images = run_dit_pipeline(dit)
    images = run_dit_pipeline(PTDiTTransformer2DModel.from_dense_dit(dit))
    assert images.shape == (2, 16, 16, 3)
    assert abs(images - dense_images).max() < 1e-5


def test_save_load_round_trip_is_bitwise(tmp_path):
    torch.manual_seed(0)
    model = PTDiTTransformer2DModel(sample_size=8, num_layers=2, num_attention_heads=2, attention_head_dim=8,
                                    window_size=2, out_channels=8).eval()
    randomise_zero_parameters(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = PTDiTTransformer2DModel.from_pretrained(tmp_path).eval()
    x, t, y = _inputs()
    assert torch.equal(loaded(x, t, y).sample, model(x, t, y).sample)
    assert loaded.config.out_channels == 8


def test_takes_dit_constructor_arguments_and_gradient_checkpointing():
    common = dict(num_attention_heads=2, attention_head_dim=8, in_channels=3, out_channels=3, num_layers=2,
                  sample_size=8, patch_size=2, num_embeds_ada_norm=4)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = PTDiTTransformer2DModel(**common, class_dropout_prob=0.0).train()
        randomise_zero_parameters(model)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(torch.ones(2, 3, 8, 8), torch.tensor([1, 500]), torch.tensor([3, 0])).sample.square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(*grads))


def test_text_conditional_forward_gradients_and_errors():
    torch.manual_seed(0)
    model = PTDiTTransformer2DModel(sample_size=8, num_layers=1, num_attention_heads=2, attention_head_dim=8,
                                    window_size=2, num_embeds_ada_norm=None, cross_attention_dim=12)
    assert model.config.out_channels == 4  # defaults to in_channels, recorded in the config
    randomise_zero_parameters(model)
    x = torch.randn(2, 4, 8, 8)
    out = model(x, 10, encoder_hidden_states=torch.randn(2, 5, 12)).sample
    assert out.shape == (2, 4, 8, 8)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(x, 10)
    with pytest.raises(ValueError, match="latent size 7x8 must be divisible by patch_size=2"):
        model(torch.randn(1, 4, 7, 8), 10, encoder_hidden_states=torch.randn(1, 5, 12))
    with pytest.raises(ValueError, match="choose one conditioning"):
        PTDiTTransformer2DModel(num_embeds_ada_norm=10, cross_attention_dim=12)
    with pytest.raises(ValueError, match="class_labels"):
        PTDiTTransformer2DModel(sample_size=8, num_layers=1, num_attention_heads=2, attention_head_dim=8)(x, 10)
