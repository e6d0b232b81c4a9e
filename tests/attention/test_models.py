"""genaccel.apply / remove on every supported diffusers transformer family (tiny random models)."""

import pytest
import torch

import genaccel
from genaccel.attention.families import FAMILIES
from tests.attention.tiny_models import FAMILY_BUILDERS, build, run

FAMILIES_UNDER_TEST = list(FAMILY_BUILDERS)


def processors(model):
    return {name: module.processor for name, module in model.named_modules() if hasattr(module, "processor")}


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)


def test_every_supported_class_is_tested():
    built = {type(build(name)[0]).__name__ for name in FAMILIES_UNDER_TEST}
    assert built == {name for family in FAMILIES for name in family.class_names}


@pytest.mark.parametrize("family", FAMILIES_UNDER_TEST)
def test_degenerate_windows_equal_dense_and_remove_is_bitwise(family):
    model, inputs, grid = build(family)
    processors_before = processors(model)
    dense = run(model, inputs)
    cases = [genaccel.WindowAttentionConfig(window=grid), genaccel.WindowAttentionConfig(window=grid, shift=True),
             genaccel.ProxyAttentionConfig(window=(1,) * len(grid)), genaccel.ProxyAttentionConfig(window=grid)]
    for config in cases:
        genaccel.apply(model, config)
        assert genaccel.is_applied(model)
        close(run(model, inputs), dense)
        genaccel.remove(model)
    # a real sparse pattern changes the output (the patch is really in the forward)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2,) * len(grid), shift="alternate"))
    assert not torch.allclose(run(model, inputs), dense, atol=1e-4)
    genaccel.remove(model)
    assert torch.equal(run(model, inputs), dense)
    after = processors(model)
    assert after.keys() == processors_before.keys()
    assert all(after[name] is proc for name, proc in processors_before.items())
    assert not model._forward_pre_hooks and not genaccel.is_applied(model)


@pytest.mark.parametrize("family", FAMILIES_UNDER_TEST)
def test_cfg_batch_elements_are_independent(family):
    model, inputs, grid = build(family)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2,) * len(grid)))
    both = run(model, inputs)
    for b in range(2):
        single = {key: (value[b:b + 1] if torch.is_tensor(value) and value.shape[:1] == (2,) else value)
                  for key, value in inputs.items()}
        close(run(model, single), both[b:b + 1])


@pytest.mark.parametrize("family,sizes", [("pixart", dict(height=14, width=10)), ("sd3", dict(height=10, width=14)),
                                          ("flux", dict(height=7, width=3)), ("wan", dict(frames=3, height=10, width=6)),
                                          ("cogvideox", dict(frames=2, height=10, width=6))])
def test_odd_non_square_grids(family, sizes):
    model, inputs, grid = build(family, **sizes)
    dense = run(model, inputs)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(1,) * len(grid)))
    close(run(model, inputs), dense)
    genaccel.remove(model)
    # a real sparse pattern on the padded odd grid (a 2-D window on video too): the fast backend equals the oracle
    for config_class in (genaccel.WindowAttentionConfig, genaccel.ProxyAttentionConfig):
        outputs = []
        for backend in ("reference", "auto"):
            genaccel.apply(model, config_class(window=(2, 2), shift="alternate", backend=backend))
            outputs.append(run(model, inputs))
            genaccel.remove(model)
        close(outputs[1], outputs[0])


@pytest.mark.parametrize("family", ["pixart", "flux", "wan"])
def test_bfloat16_model(family):
    model, inputs, grid = build(family)
    model = model.to(torch.bfloat16)
    inputs = {k: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() and k != "img_ids"
                  and k != "txt_ids" else v) for k, v in inputs.items()}
    dense = run(model, inputs)
    genaccel.apply(model, genaccel.WindowAttentionConfig(window=grid))
    out = run(model, inputs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), dense.float(), atol=5e-2, rtol=5e-2)


def test_dense_steps_follow_the_denoising_schedule():
    model, inputs, grid = build("dit")
    config = genaccel.ProxyAttentionConfig(window=(2, 2), dense_steps=2)
    dense = run(model, inputs)
    genaccel.apply(model, config)
    at = lambda t: run(model, {**inputs, "timestep": torch.tensor([t, t])})  # noqa: E731
    assert torch.equal(at(500), dense)                   # step 0 of a call: dense
    at(400)                                              # step 1: dense
    assert not torch.allclose(at(300), dense, atol=1e-4)  # step 2: sparse
    assert torch.equal(at(500), dense)                   # a higher timestep starts a new call: dense again


def test_dense_blocks_stay_dense():
    model, inputs, _ = build("pixart")
    dense = run(model, inputs)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2), dense_blocks=(0, 1)))
    assert torch.equal(run(model, inputs), dense)
    genaccel.remove(model)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2), dense_blocks=(1,)))
    assert not torch.allclose(run(model, inputs), dense, atol=1e-4)


def test_bad_targets_and_configs_raise_clear_errors():
    model, inputs, _ = build("pixart")
    with pytest.raises(TypeError, match="PixArtTransformer2DModel"):
        genaccel.apply(torch.nn.Linear(2, 2), genaccel.ProxyAttentionConfig(window=(2, 2)))
    with pytest.raises(TypeError, match="Supported transformers"):
        genaccel.apply(object(), genaccel.ProxyAttentionConfig(window=(2, 2)))
    with pytest.raises(TypeError, match="ProxyAttentionConfig"):
        genaccel.apply(model, {"window": (2, 2)})
    with pytest.raises(ValueError, match="positive"):
        genaccel.ProxyAttentionConfig(window=(0, 4))
    with pytest.raises(ValueError, match="positive"):
        genaccel.WindowAttentionConfig(window=(4, -1))
    with pytest.raises(ValueError, match="shift"):
        genaccel.WindowAttentionConfig(window=(4, 4), shift="sometimes")
    with pytest.raises(ValueError, match="no genaccel attention"):
        genaccel.remove(model)
    genaccel.apply(model, genaccel.WindowAttentionConfig(window=(2, 2, 2)))
    with pytest.raises(ValueError, match="does not fit"):
        run(model, inputs)
    with pytest.raises(ValueError, match="already"):
        genaccel.apply(model, genaccel.WindowAttentionConfig(window=(2, 2)))


def test_flux_grid_comes_from_img_ids_not_sqrt():
    model, inputs, grid = build("flux", height=2, width=8)  # 16 tokens: sqrt would say 4 x 4
    dense = run(model, inputs)
    genaccel.apply(model, genaccel.WindowAttentionConfig(window=(2, 8)))
    close(run(model, inputs), dense)
    shuffled = {**inputs, "img_ids": inputs["img_ids"].flip(0)}
    with pytest.raises(ValueError, match="row-major"):
        run(model, shuffled)
