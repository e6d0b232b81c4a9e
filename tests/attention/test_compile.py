"""torch.compile of a patched transformer: one graph (no break), no recompiles across steps and calls.

Compiled with a counting backend on CPU (`CompileCounterWithBackend("eager")`): it counts the graphs
dynamo hands over, without generating code, so the test checks tracing, guards and recompiles.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch._dynamo
from diffusers import DDIMScheduler
from torch._dynamo.testing import CompileCounterWithBackend

import genaccel
from tests.attention.tiny_models import FAMILY_BUILDERS, build, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class TinyPipeline:
    """What genaccel reads of a diffusers pipeline: its transformer(s) and scheduler (and Flux's prepare_latents)."""

    def __init__(self, transformer, inputs, transformer_2=None):
        self.transformer, self.transformer_2, self.inputs = transformer, transformer_2, inputs
        self.scheduler = DDIMScheduler()

    def prepare_latents(self):
        return self.inputs["hidden_states"], self.inputs.get("img_ids")

    def __call__(self, steps: int, switch_at: int | None = None) -> list[torch.Tensor]:
        """One "pipeline call": one transformer call per scheduler step (transformer_2 from `switch_at` on)."""
        device = self.inputs["hidden_states"].device
        self.scheduler.set_timesteps(steps, device=device)
        if "img_ids" in self.inputs:
            self.prepare_latents()
        outputs = []
        for index, timestep in enumerate(self.scheduler.timesteps):
            model = self.transformer_2 if switch_at is not None and index >= switch_at else self.transformer
            inputs = {**self.inputs, "timestep": timestep.expand(2)}
            with torch.no_grad():
                outputs.append(model(**inputs, return_dict=False)[0])
            self.scheduler.step(torch.zeros(1, device=device), timestep, torch.zeros(1, device=device))
        return outputs


def window_for(grid):
    return (2, 2) if len(grid) == 2 else (1, 2, 2)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_fullgraph_compile_has_one_graph_and_no_recompiles(family):
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=window_for(grid), shift="alternate"))
    eager = pipe(steps=2)
    counter = CompileCounterWithBackend("eager")
    pipe.transformer = torch.compile(model, backend=counter, fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(2):  # two pipeline calls of two steps: one graph, traced once
            compiled = pipe(steps=2)
    assert counter.frame_count == 1
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("family", ["pixart", "flux", "wan"])
def test_dense_steps_compile_to_two_graphs_at_most(family):
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    dense_outputs = pipe(steps=3)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=window_for(grid), dense_steps=1))
    eager = pipe(steps=3)
    counter = CompileCounterWithBackend("eager")
    pipe.transformer = torch.compile(model, backend=counter, fullgraph=True)
    for _ in range(3):
        compiled = pipe(steps=3)
    assert counter.frame_count == 2  # dense and sparse, for all steps of all calls
    torch.testing.assert_close(compiled[0], dense_outputs[0])
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(compiled[2], dense_outputs[2], atol=1e-4)


def test_compiled_transformer_can_be_patched_and_restored():
    """apply / remove on a torch.compile'd module patch the module it wraps."""
    model, inputs, grid = build("pixart")
    dense = run(model, inputs)
    compiled = torch.compile(model, backend="eager")
    genaccel.apply(compiled, genaccel.ProxyAttentionConfig(window=(2, 2)))
    assert genaccel.is_applied(model)
    sparse = run(compiled, inputs)
    assert not torch.allclose(sparse, dense, atol=1e-4)
    genaccel.remove(compiled)
    torch.testing.assert_close(run(compiled, inputs), dense)


def test_bare_transformer_with_dense_steps_under_compile_is_a_clear_error():
    model, inputs, grid = build("pixart")
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2), dense_steps=1))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="apply genaccel to the pipeline"):
        run(compiled, inputs)


def test_bare_flux_under_compile_asks_for_the_pipeline():
    model, inputs, grid = build("flux")
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(2, 2)))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="apply genaccel to the pipeline"):
        run(compiled, inputs)


@pytest.mark.parametrize("shift,graphs", [(False, 1), ("alternate", 2)])
def test_regional_compilation_of_repeated_blocks(shift, graphs):
    """diffusers' `compile_repeated_blocks(fullgraph=True)` on Wan: one graph for every block, or one per
    window parity when odd blocks are shifted."""
    model, inputs, grid = build("wan", frames=2, height=8, width=8)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(1, 2, 2), shift=shift))
    eager = run(model, inputs)
    counter = CompileCounterWithBackend("eager")
    model.compile_repeated_blocks(fullgraph=True, backend=counter)
    for _ in range(2):
        compiled = run(model, inputs)
    assert counter.frame_count == graphs
    torch.testing.assert_close(compiled, eager)


@pytest.mark.parametrize("family", ["pixart", "cogvideox"])
def test_torch_export_of_a_patched_transformer(family):
    """The ahead-of-time path (torch.export, which AOTInductor packages) traces the patched model."""
    model, inputs, grid = build(family)
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=window_for(grid)))
    eager = run(model, inputs)
    exported = torch.export.export(model, (), {**inputs, "return_dict": False})
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(**inputs, return_dict=False)[0], eager)


@pytest.mark.skipif(not os.environ.get("GENACCEL_SLOW_TESTS"),
                    reason="AOTInductor compiles C++ for one to two minutes on 2 cores: set GENACCEL_SLOW_TESTS=1 "
                           "(.ci/run does)")
def test_aot_inductor_package_of_a_patched_transformer(tmp_path):
    """diffusers' `test_compile_works_with_aot` on a patched model: export, AOTInductor-compile to a .pt2
    package (C++ on CPU), load it and run it; its output equals the eager patched model's."""
    from torch._inductor.package import load_package

    model, inputs, grid = build("pixart")
    genaccel.apply(model, genaccel.ProxyAttentionConfig(window=window_for(grid)))
    eager = run(model, inputs)
    exported = torch.export.export(model, (), {**inputs, "return_dict": False})
    package = torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp_path / "pixart.pt2"))
    loaded = load_package(package, run_single_threaded=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs, return_dict=False)[0], eager, rtol=1e-4, atol=1e-4)
