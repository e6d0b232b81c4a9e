import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiTTransformer2DModel
from PIL import Image

from genaccel.pipelines.class_conditional import ClassConditionalPipeline, image_grid


def _pipe(seed: int = 0) -> ClassConditionalPipeline:
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=3, out_channels=3,
                                        num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=3).eval()
    with torch.no_grad():  # adaLN-zero starts as the identity; give the blocks something to do
        for param in transformer.parameters():
            param.add_(0.05 * torch.randn_like(param))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    pipe = ClassConditionalPipeline(transformer=transformer, scheduler=scheduler, class_names=["a", "b", "c"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs):
    kwargs = {"num_inference_steps": 2, "generator": torch.Generator().manual_seed(0), "output_type": "pt", **kwargs}
    return pipe([0, 2], **kwargs).images


def test_two_steps_are_deterministic_under_a_seed_and_depend_on_it():
    pipe = _pipe()
    first, second = _run(pipe), _run(pipe)
    assert first.shape == (2, 3, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, second)
    assert not torch.equal(first, _run(pipe, generator=torch.Generator().manual_seed(1)))


def test_guidance_batches_conditional_and_unconditional_in_one_call():
    pipe = _pipe()
    calls = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, kwargs_, output: calls.append((args[0].shape[0], kwargs_["class_labels"].tolist())),
        with_kwargs=True)
    _run(pipe, guidance_scale=3.0)
    assert calls == [(4, [0, 2, 3, 3])] * 2  # the null class is index num_classes
    calls.clear()
    _run(pipe, guidance_scale=1.0)
    assert calls == [(2, [0, 2])] * 2
    handle.remove()


def test_guidance_combines_the_two_halves():
    pipe = _pipe()
    plain = _run(pipe, guidance_scale=1.0)
    guided = _run(pipe, guidance_scale=4.0)
    assert not torch.allclose(plain, guided)


def test_output_types_and_class_names():
    pipe = _pipe()
    pt = _run(pipe)
    arrays = _run(pipe, output_type="np")
    assert isinstance(arrays, np.ndarray) and arrays.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(arrays, pt.permute(0, 2, 3, 1).numpy())
    images = pipe(["a", "c"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert all(isinstance(image, Image.Image) and image.size == (8, 8) for image in images)
    expected = (pt.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(images[1]), expected[1])
    assert image_grid(images, columns=2).size == (16, 8)


@pytest.mark.parametrize("labels, error, message", [
    ([3], ValueError, "outside"), (["z"], ValueError, "unknown class name"), ([], ValueError, "empty"),
    ([1.5], TypeError, "ints or class names"),
])
def test_bad_labels(labels, error, message):
    with pytest.raises(error, match=message):
        _pipe()(labels, num_inference_steps=1)


def test_bad_output_type_and_steps():
    with pytest.raises(ValueError, match="output_type"):
        _pipe()([0], output_type="latent")
    with pytest.raises(ValueError, match="num_inference_steps"):
        _pipe()([0], num_inference_steps=0)


def test_image_size_runs_the_transformer_on_a_larger_grid():
    pipe = _pipe()
    grids = []
    handle = pipe.transformer.register_forward_hook(lambda module, args, output: grids.append(args[0].shape[-2:]))
    images = _run(pipe, image_size=16)
    handle.remove()
    assert images.shape == (2, 3, 16, 16) and set(grids) == {(16, 16)}
    assert torch.equal(_run(pipe, image_size=8), _run(pipe))  # the default is the config's sample_size
    for size in (0, 7, 9.0):
        with pytest.raises(ValueError, match="image_size must be a positive multiple of the patch size"):
            _run(pipe, image_size=size)


def test_save_and_reload_roundtrip(tmp_path):
    pipe = _pipe()
    pipe.save_pretrained(tmp_path)
    loaded = ClassConditionalPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(_run(pipe), _run(loaded))


def test_sparse_attention_applies_to_the_pipeline_and_removes_exactly():
    import genaccel

    pipe = _pipe()
    dense = _run(pipe, guidance_scale=2.0)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(4, 4)))  # one window covers the 4x4 grid
    whole = _run(pipe, guidance_scale=2.0)
    genaccel.remove(pipe)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2)))
    sparse = _run(pipe, guidance_scale=2.0)
    genaccel.remove(pipe)
    torch.testing.assert_close(whole, dense, atol=1e-5, rtol=0)
    assert not torch.allclose(sparse, dense, atol=1e-4)
    assert torch.equal(_run(pipe, guidance_scale=2.0), dense)
