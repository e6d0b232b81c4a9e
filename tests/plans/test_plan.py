"""SparsityPlan: JSON round trips, exact equivalences with the configs it generalises, compile, bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import genaccel
from genaccel.attention.reuse import StepReuse
from genaccel.plans import CostModel, SparsityPlan, parse_choice
from tests.attention.test_compile import TinyPipeline, window_for
from tests.attention.tiny_models import FAMILY_BUILDERS, build

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def plan_for(model, grid, rows, phase_starts=(0,), steps=4) -> SparsityPlan:
    return SparsityPlan([list(row) for row in rows], phase_starts, steps, CostModel.of_transformer(model, grid),
                        type(model).__name__)


def blocks_of(model, grid) -> int:
    return len(CostModel.of_transformer(model, grid).attention_widths)


def processors(model) -> list:
    return [module.processor for _, module in model.named_modules() if hasattr(module, "processor")]


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_a_plan_dense_everywhere_is_exactly_dense_and_patches_nothing(family):
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    before = processors(model)
    dense = pipe(steps=3)
    plan = plan_for(model, grid, [[None, None]] * blocks_of(model, grid), phase_starts=(0, 2), steps=3)
    assert plan.is_dense() and plan.expected_speedup == 1.0
    with genaccel.applied(pipe, plan):
        assert processors(model) == before
        for got, expected in zip(pipe(steps=3), dense):
            assert torch.equal(got, expected)


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_a_uniform_plan_is_the_config_and_remove_restores_every_processor(family):
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    before = processors(model)
    window = window_for(grid)
    with genaccel.applied(pipe, genaccel.ProxyAttentionConfig(window=window, shift=True)):
        expected = pipe(steps=2)
    plan = plan_for(model, grid, [[parse_choice(f"proxy {'x'.join(map(str, window))} shifted")]] * blocks_of(model, grid))
    genaccel.apply(pipe, plan)
    got = pipe(steps=2)
    genaccel.remove(pipe)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert all(a is b for a, b in zip(processors(model), before))


@pytest.mark.parametrize("family", ["pixart", "flux", "wan"])
def test_phases_dense_then_sparse_equal_dense_steps_and_map_to_other_step_counts(family):
    """Phase 0 dense, phase 1 proxy == ProxyAttentionConfig(dense_steps=k); calibrated at 4 steps, a call of
    8 steps maps step i to i * 4 // 8, so the phase boundary moves to step 4."""
    model, inputs, grid = build(family)
    pipe = TinyPipeline(model, inputs)
    window = window_for(grid)
    choice = genaccel.ProxyAttentionConfig(window=window)
    plan = plan_for(model, grid, [[None, choice]] * blocks_of(model, grid), phase_starts=(0, 2), steps=4)
    for steps, dense_steps in ((4, 2), (8, 4)):
        with genaccel.applied(pipe, genaccel.ProxyAttentionConfig(window=window, dense_steps=dense_steps)):
            expected = pipe(steps=steps)
        with genaccel.applied(pipe, plan):
            got = pipe(steps=steps)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_per_block_choices_are_each_blocks_own():
    """Block 0 window, block 1 dense: equals WindowAttentionConfig with dense_blocks=(1,)."""
    model, inputs, grid = build("pixart")
    pipe = TinyPipeline(model, inputs)
    window = window_for(grid)
    with genaccel.applied(pipe, genaccel.WindowAttentionConfig(window=window, dense_blocks=(1,))):
        expected = pipe(steps=2)
    plan = plan_for(model, grid, [[genaccel.WindowAttentionConfig(window=window)], [None]])
    with genaccel.applied(pipe, plan):
        got = pipe(steps=2)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_save_load_round_trip_is_exact_and_readable(tmp_path):
    model, inputs, grid = build("wan")
    rows = [[None, parse_choice("proxy 1x2x2"), parse_choice("window 2x2x2 shifted")]] * blocks_of(model, grid)
    plan = plan_for(model, grid, rows, phase_starts=(0, 1, 3), steps=5)
    plan.calibration = {"target": {"psnr": 30.0}, "seconds": 1.5}
    path = plan.save(tmp_path / "plan.json")
    loaded = SparsityPlan.load(path)
    assert loaded.to_dict() == plan.to_dict()
    assert loaded.choices == plan.choices and loaded.phase_starts == (0, 1, 3)
    assert loaded.save(tmp_path / "again.json").read_bytes() == path.read_bytes()
    text = path.read_text()
    assert '["dense", "proxy 1x2x2", "window 2x2x2 shifted"]' in text  # one line per block
    assert json.loads(text)["phases"] == [[0, 1], [1, 3], [3, 5]]


def test_expected_speedup_is_the_cost_model_weighted_by_phase_length():
    cost = CostModel(grid=(8, 8), linear_flops_per_token=1000.0, attention_widths=(16, 16))
    proxy = parse_choice("proxy 4x4")  # 16 keys in the window + 4 proxies = 20 keys instead of 64
    plan = SparsityPlan([[None, proxy], [proxy, proxy]], (0, 1), 4, cost)
    dense_call = 64 * 1000 + 2 * 4 * 64 * 64 * 16
    first = 64 * 1000 + 4 * 64 * 64 * 16 + 4 * 64 * 20 * 16
    rest = 64 * 1000 + 2 * 4 * 64 * 20 * 16
    assert plan.expected_speedup == pytest.approx(4 * dense_call / (first + 3 * rest), rel=1e-12)


@pytest.mark.parametrize("reuse", [False, True])
def test_compiled_plan_has_one_graph_per_phase(reuse):
    """Without "+reuse": one graph per phase; with it: one per phase and step parity (0, 1 | 2, 3)."""
    model, inputs, grid = build("pixart")
    pipe = TinyPipeline(model, inputs)
    window = window_for(grid)
    proxy = genaccel.ProxyAttentionConfig(window=window)
    if reuse:
        rows, phase_starts, steps, graphs = [[StepReuse(proxy), proxy]] * 2, (0, 2), 4, 4
    else:
        rows, phase_starts, steps, graphs = [[None, proxy, genaccel.WindowAttentionConfig(window=window)]] * 2, \
            (0, 1, 2), 3, 3
    plan = plan_for(model, grid, rows, phase_starts=phase_starts, steps=steps)
    genaccel.apply(pipe, plan)
    eager = pipe(steps=steps)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("eager")
    pipe.transformer = torch.compile(model, backend=counter, fullgraph=True)
    try:
        for _ in range(3):
            compiled = pipe(steps=steps)
        assert counter.frame_count == graphs
        for got, expected in zip(compiled, eager):
            torch.testing.assert_close(got, expected)
    finally:
        pipe.transformer = model
        genaccel.remove(pipe)
        torch._dynamo.reset()


@pytest.mark.parametrize("text", ["proxy", "proxy 4", "sparse 4x4", "window 4x4 shift", "dense please"])
def test_bad_choices_name_the_syntax(text):
    with pytest.raises(ValueError, match="accepted: 'dense', 'proxy HxW'"):
        parse_choice(text)


def test_bad_plans_get_clear_errors(tmp_path):
    model, inputs, grid = build("pixart")
    pipe = TinyPipeline(model, inputs)
    plan = plan_for(model, grid, [[None, parse_choice("proxy 2x2")]] * 2, phase_starts=(0, 2), steps=4)
    with pytest.raises(ValueError, match="apply it to the pipeline"):
        genaccel.apply(model, plan)
    other, other_inputs, other_grid = build("sd3")
    with pytest.raises(ValueError, match=f"this plan has 2 attention blocks but this SD3Transformer2DModel has "
                                         f"{blocks_of(other, other_grid)}; calibrate a plan for this model"):
        genaccel.apply(TinyPipeline(other, other_inputs), plan)
    with pytest.raises(ValueError, match="phase starts must be increasing"):
        plan_for(model, grid, [[None, None]] * 2, phase_starts=(0, 4), steps=4)
    with pytest.raises(ValueError, match="block 0 has 1 choices for 2 phases"):
        plan_for(model, grid, [[None]] * 2, phase_starts=(0, 2), steps=4)
    with pytest.raises(ValueError, match="'alternate' is a per-block"):
        plan_for(model, grid, [[genaccel.ProxyAttentionConfig(window=(2, 2), shift="alternate")]] * 2)
    data = plan.to_dict()
    data["phases"] = [[0, 1], [2, 4]]
    (tmp_path / "gap.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="gap.json: phases must be contiguous"):
        SparsityPlan.load(tmp_path / "gap.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a SparsityPlan"):
        SparsityPlan.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="genaccel calibrate MODEL --out"):
        SparsityPlan.load(tmp_path / "missing.json")
    assert pipe(steps=1)  # nothing was left applied by the refused calls
    assert not genaccel.is_applied(pipe)
