"""apply() semantics: steps counted per pipeline call, what it refuses, what it leaves alone, what users do after."""

from __future__ import annotations

import pytest
import torch
from diffusers import PixArtTransformer2DModel
from diffusers.models.attention_processor import AttnProcessor2_0

import genaccel
from tests.attention.test_compile import TinyPipeline
from tests.attention.tiny_models import build, run


def test_wan22_counts_steps_per_pipeline_call_across_both_transformers():
    """dense_steps=3 with the switch to transformer_2 after step 2: step 2 (transformer_2's first) is dense,
    step 3 sparse; each transformer counting its own calls would keep step 3 dense."""
    high, inputs, _ = build("wan", seed=0)
    low, _, _ = build("wan", seed=1)
    pipe = TinyPipeline(high, inputs, transformer_2=low)
    dense = pipe(steps=4, switch_at=2)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(1, 2, 2), dense_steps=3))
    for _ in range(2):  # the count restarts with every pipeline call
        sparse = pipe(steps=4, switch_at=2)
        for step in range(3):
            torch.testing.assert_close(sparse[step], dense[step])
        assert not torch.allclose(sparse[3], dense[3], atol=1e-4)
    genaccel.remove(pipe)
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__


def test_replacing_the_scheduler_after_apply_is_an_error():
    model, inputs, _ = build("pixart")
    pipe = TinyPipeline(model, inputs)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2), dense_steps=1))
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    with pytest.raises(RuntimeError, match="scheduler was replaced"):
        pipe(steps=2)
    genaccel.remove(pipe)


def test_out_of_range_dense_blocks_raise():
    model, _, _ = build("pixart")  # two attention blocks
    with pytest.raises(ValueError, match=r"dense_blocks \[2, 7\].*0\.\.1"):
        genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2), dense_blocks=(1, 2, 7)))
    assert not genaccel.is_applied(model)


def test_a_subclass_of_a_supported_class_is_patched():
    class MyPixArt(PixArtTransformer2DModel):
        pass

    torch.manual_seed(0)
    model, inputs, grid = build("pixart")
    mine = MyPixArt.from_config(model.config).eval()
    mine.load_state_dict(model.state_dict())
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2)))
    genaccel.apply(mine, genaccel.ProxyAttentionConfig(window=(2, 2)))
    torch.testing.assert_close(run(mine, inputs), run(model, inputs))


def test_unknown_processors_are_left_in_place_and_named():
    class MyProcessor(AttnProcessor2_0):
        pass

    model, inputs, _ = build("pixart")
    mine = MyProcessor()
    model.transformer_blocks[1].attn1.set_processor(mine)
    with pytest.warns(UserWarning, match=r"transformer_blocks\.1\.attn1 \(MyProcessor\)"):
        genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2)))
    assert model.transformer_blocks[1].attn1.processor is mine
    assert type(model.transformer_blocks[0].attn1.processor).__name__ == "SelfAttentionProcessor"
    genaccel.remove(model)
    assert model.transformer_blocks[1].attn1.processor is mine


def test_processors_replaced_after_apply_raise_on_the_next_call():
    model, inputs, _ = build("pixart")
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2)))
    model.set_attn_processor(AttnProcessor2_0())  # what fuse_qkv_projections and the loaders do
    with pytest.raises(RuntimeError, match="replaced after genaccel.apply"):
        run(model, inputs)
    with pytest.warns(UserWarning, match="left as they are"):
        genaccel.remove(model)
    assert type(model.transformer_blocks[0].attn1.processor) is AttnProcessor2_0


def test_rebuilding_a_sparse_processor_without_arguments_says_what_to_do():
    """diffusers' load_ip_adapter rebuilds every processor as `type(processor)()`."""
    model, _, _ = build("flux")
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2)))
    processor = model.transformer_blocks[0].attn.processor
    with pytest.raises(TypeError, match=r"genaccel.remove\(pipe\) first"):
        type(processor)()


def test_applied_context_manager_restores():
    model, inputs, _ = build("sd3")
    dense = run(model, inputs)
    with genaccel.applied(model, genaccel.ProxyAttentionConfig(window=(2, 2))) as patched:
        assert patched is model and genaccel.is_applied(model)
        assert not torch.allclose(run(model, inputs), dense, atol=1e-4)
    assert not genaccel.is_applied(model)
    assert torch.equal(run(model, inputs), dense)


def test_remove_on_a_transformer_applied_through_its_pipeline_asks_for_the_pipeline():
    model, inputs, _ = build("dit")
    pipe = TinyPipeline(model, inputs)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2)))
    with pytest.raises(ValueError, match=r"genaccel.remove\(pipe\)"):
        genaccel.remove(model)
    genaccel.remove(pipe)


def test_flux_pipeline_records_the_grid_once_per_call():
    model, inputs, grid = build("flux", height=2, width=8)  # 16 tokens: sqrt would say 4 x 4
    pipe = TinyPipeline(model, inputs)
    dense = pipe(steps=1)
    genaccel.apply(pipe, genaccel.WindowAttentionConfig(window=(2, 8)))  # covers the grid: equals dense
    torch.testing.assert_close(pipe(steps=1)[0], dense[0], rtol=1e-5, atol=2e-5)
    assert model._genaccel_patch.state.recorded_grid == (2, 8)
    genaccel.remove(pipe)
    assert "prepare_latents" not in pipe.__dict__
