"""Step reuse ("+reuse" plan choices): odd steps return each block's previous output exactly, even steps
compute the choice exactly, passes and calls never mix, the cost model and the syntax."""

from __future__ import annotations

import pytest
import torch

import genaccel
from genaccel.attention.reuse import StepOutputs, StepReuse
from genaccel.plans import CostModel, SparsityPlan, format_choice, parse_choice
from tests.attention.test_compile import TinyPipeline, window_for
from tests.attention.tiny_models import FAMILY_BUILDERS, build
from tests.plans.test_plan import blocks_of, plan_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def attention_outputs(model):
    """Hooks recording every patched-or-not attention module's output per call, and their handles."""
    from genaccel.api import _attention_modules
    from genaccel.attention.families import family_of

    recorded: dict[str, list] = {}
    handles = []
    for _, name, module in _attention_modules(model, family_of(model)):
        def hook(module, args, output, name=name):
            tensors = output if isinstance(output, tuple) else (output,)
            recorded.setdefault(name, []).append(tuple(t.clone() for t in tensors if torch.is_tensor(t)))
        handles.append(module.register_forward_hook(hook))
    return recorded, handles


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_odd_steps_reuse_the_previous_output_and_even_steps_compute_the_choice(family):
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    proxy = genaccel.ProxyAttentionConfig(window=window_for(grid))
    with genaccel.applied(pipe, proxy):
        uniform = pipe(steps=4)
    plan = plan_for(model, grid, [[StepReuse(proxy)]] * blocks_of(model, grid))
    with genaccel.applied(pipe, plan):
        recorded, handles = attention_outputs(model)
        try:
            reused = pipe(steps=4)
        finally:
            for handle in handles:
                handle.remove()
    for step in (0, 2):
        assert torch.equal(reused[step], uniform[step])
    assert not torch.equal(reused[1], uniform[1])
    assert recorded
    for name, outputs in recorded.items():
        assert len(outputs) == 4
        for step in (1, 3):
            assert all(torch.equal(a, b) for a, b in zip(outputs[step], outputs[step - 1])), (name, step)


def test_a_new_call_never_reuses_the_last_calls_outputs():
    model, inputs, grid = build("pixart")
    pipe = TinyPipeline(model, inputs)
    plan = plan_for(model, grid, [[StepReuse(None)]] * blocks_of(model, grid))
    dense = pipe(steps=3)
    with genaccel.applied(pipe, plan):
        first, second = pipe(steps=3), pipe(steps=3)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(first[0], dense[0]) and torch.equal(first[2], dense[2])


def test_step_outputs_keep_each_pass_apart():
    cache, computed = StepOutputs(), []

    def run(pass_index, reuse, value):
        return cache.run(pass_index, reuse, lambda: computed.append(value) or value)

    assert [run(0, False, "c0"), run(1, False, "u0")] == ["c0", "u0"]  # two passes per step
    assert [run(0, True, "c1"), run(1, True, "u1")] == ["c0", "u0"]  # each pass gets its own
    assert run(2, True, "x") == "x"  # a third pass has nothing kept: it computes
    assert [run(0, False, "c2"), run(0, True, "c3")] == ["c2", "c2"]
    assert computed == ["c0", "u0", "x", "c2"]


def test_a_pipeline_with_two_passes_per_step_reuses_each_pass_its_own_output():
    model, inputs, grid = build("pixart")
    pipe = TwoPassPipeline(model, inputs)
    plan = plan_for(model, grid, [[StepReuse(None)]] * blocks_of(model, grid))
    dense = pipe(steps=4)
    with genaccel.applied(pipe, plan):
        reused = pipe(steps=4)
    assert torch.equal(reused[0], dense[0]) and torch.equal(reused[4], dense[4])  # step 0 and 2, first pass
    assert torch.equal(reused[1], dense[1]) and torch.equal(reused[5], dense[5])  # step 0 and 2, second pass
    assert not torch.equal(reused[2], dense[2]) and not torch.equal(reused[3], dense[3])


class TwoPassPipeline(TinyPipeline):
    """Two transformer calls per step with different inputs (as guidance in two passes does)."""

    def __call__(self, steps: int) -> list[torch.Tensor]:
        self.scheduler.set_timesteps(steps)
        outputs = []
        for timestep in self.scheduler.timesteps:
            for scale in (1.0, -1.0):
                inputs = {**self.inputs, "hidden_states": scale * self.inputs["hidden_states"],
                          "timestep": timestep.expand(2)}
                with torch.no_grad():
                    outputs.append(self.transformer(**inputs, return_dict=False)[0])
            self.scheduler.step(torch.zeros(1), timestep, torch.zeros(1))
        return outputs


def test_reuse_choices_round_trip_as_text(tmp_path):
    for text in ("dense +reuse", "proxy 4x4 +reuse", "window 2x4x4 shifted +reuse"):
        assert format_choice(parse_choice(text)) == text
    assert parse_choice("proxy 4x4 shifted +reuse") == StepReuse(genaccel.ProxyAttentionConfig(window=(4, 4), shift=True))
    for bad in ("+reuse", "dense +reuse +reuse", "proxy +reuse"):
        with pytest.raises(ValueError, match="then optionally ' \\+reuse'"):
            parse_choice(bad)
    cost = CostModel(grid=(8, 8), linear_flops_per_token=1000.0, attention_widths=(16, 16),
                     attention_parameters=(100, 100))
    plan = SparsityPlan([[None, parse_choice("dense +reuse")], [parse_choice("proxy 4x4 +reuse")] * 2], (0, 2), 4, cost)
    loaded = SparsityPlan.load(plan.save(tmp_path / "plan.json"))
    assert loaded.choices == plan.choices and loaded.cost_model == cost and loaded.reuses_steps()


def test_reused_blocks_cost_neither_attention_nor_their_weights_on_odd_steps():
    cost = CostModel(grid=(8, 8), linear_flops_per_token=1000.0, attention_widths=(16, 16),
                     attention_parameters=(100, 100))
    plan = SparsityPlan([[parse_choice("dense +reuse")], [None]], (0,), 4, cost)
    attention = 4 * 64 * 64 * 16
    dense_call = 64 * 1000 + 2 * attention
    reused_call = 64 * 1000 - 2 * 64 * 100 + attention  # block 0 skipped: no attention, no projections
    assert plan.expected_speedup == pytest.approx(4 * dense_call / (2 * dense_call + 2 * reused_call), rel=1e-12)


def test_a_reuse_plan_needs_the_pipeline():
    model, inputs, grid = build("pixart")
    plan = plan_for(model, grid, [[StepReuse(None)]] * blocks_of(model, grid))
    with pytest.raises(ValueError, match="reuses outputs on odd steps"):
        genaccel.apply(model, plan)
    assert not genaccel.is_applied(model)
