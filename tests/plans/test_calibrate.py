"""genaccel.calibrate on the bundled reference DiT: the fidelity promise on calls it did not see, bad input."""

from __future__ import annotations

import math

import pytest

import genaccel
from genaccel.eval.fidelity import psnr
from genaccel.pipelines.loading import generate
from genaccel.pipelines.reference import load_reference_pipeline

STEPS = 8
TARGET = 24.0


@pytest.fixture(scope="module")
def pipe():
    pipe = load_reference_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def calls(seeds, classes):
    return [{"class_labels": [c], "num_inference_steps": STEPS, "seed": s} for s, c in zip(seeds, classes)]


@pytest.fixture(scope="module")
def plan(pipe):
    return genaccel.calibrate(pipe, calls([0, 1], [0, 5]), target_psnr=TARGET, progress=False)


def test_the_plan_keeps_its_promise_on_calls_it_did_not_see(pipe, plan):
    assert not plan.is_dense() and plan.expected_speedup > 1.0
    info = plan.calibration
    assert info["worst_on_calls"] >= TARGET + info["margin"]
    assert 0 < info["trials"] <= 8 and info["dense_generations"] > 0
    assert info["dense_leading_phases"] in (0, 1, 2)
    computed = [c for c in info["candidates"] if not c.endswith("+reuse")]
    assert info["candidates"] == computed + [f"{c} +reuse" for c in computed] + ["dense +reuse"]
    unseen = [(seed, label) for seed, label in zip(range(10, 14), (1, 2, 3, 7))]
    dense = [generate(pipe, label, seed, steps=STEPS) for seed, label in unseen]
    with genaccel.applied(pipe, plan):
        sparse = [generate(pipe, label, seed, steps=STEPS) for seed, label in unseen]
    values = [psnr(a, b) for a, b in zip(sparse, dense)]
    assert min(values) >= TARGET, values
    assert not all(math.isinf(v) for v in values)  # the plan does change the outputs


def test_calibration_uses_only_the_candidates_given_and_restores_the_pipeline(pipe):
    candidates = [genaccel.WindowAttentionConfig(window=(8, 8), shift=True)]
    bar_config = dict(pipe._progress_bar_config)
    plan = genaccel.calibrate(pipe, calls([0], [0]), target_psnr=15.0, candidates=candidates, phases=2,
                              step_reuse=False, progress=False)
    assert {str(c.window) + str(c.shift) for row in plan.choices for c in row if c is not None} <= {"(8, 8)True"}
    assert len(plan.phase_starts) == 2 and plan.num_inference_steps == STEPS
    assert plan.calibration["candidates"] == ["window 8x8 shifted"] and not plan.reuses_steps()
    assert not genaccel.is_applied(pipe) and pipe._progress_bar_config == bar_config
    assert all(type(m.processor).__name__ == "AttnProcessor2_0" for m in pipe.transformer.modules()
               if hasattr(m, "processor"))


def test_bad_calibration_input_gets_one_line_errors(pipe):
    import torch

    good = calls([0], [0])
    with pytest.raises(ValueError, match="give one fidelity target"):
        genaccel.calibrate(pipe, good)
    with pytest.raises(ValueError, match="give one fidelity target"):
        genaccel.calibrate(pipe, good, target_psnr=30, target_ssim=0.9)
    with pytest.raises(ValueError, match="`seed` instead of a `generator`"):
        genaccel.calibrate(pipe, [{**good[0], "generator": torch.Generator()}], target_psnr=30)
    with pytest.raises(ValueError, match="non-empty list of keyword dicts"):
        genaccel.calibrate(pipe, [], target_psnr=30)
    with pytest.raises(TypeError, match="takes the pipeline"):
        genaccel.calibrate(pipe.transformer, good, target_psnr=30)
    with pytest.raises(ValueError, match="'alternate' is a per-block"):
        genaccel.calibrate(pipe, good, target_psnr=30,
                           candidates=[genaccel.ProxyAttentionConfig(window=(4, 4), shift="alternate")])
    mixed = good + [{**good[0], "image_size": 64}]
    with pytest.raises(ValueError, match="share one token grid"):
        genaccel.calibrate(pipe, mixed, target_psnr=30, progress=False)
    with genaccel.applied(pipe, genaccel.ProxyAttentionConfig(window=(4, 4))):
        with pytest.raises(ValueError, match="already has genaccel attention"):
            genaccel.calibrate(pipe, good, target_psnr=30)
    assert not genaccel.is_applied(pipe)


def test_measured_reuse_error_is_the_step_to_step_change_of_the_dense_outputs(pipe):
    """The error recorded for "dense +reuse" is exactly how much each block's dense output moves
    from an even step to the next odd one, relative to the phase's dense outputs."""
    from types import SimpleNamespace

    import numpy as np

    from genaccel.api import _attention_modules
    from genaccel.attention.families import family_of
    from genaccel.plans.calibrate import _measure, _outputs

    transformer = pipe.transformer
    family = family_of(transformer)
    modules = _attention_modules(transformer, family)
    call = calls([3], [4])
    dense: list[list] = [[] for _ in modules]
    handles = [module.register_forward_hook(
        lambda module, args, output, i=i: dense[i].append(output.detach().double().reshape(-1).clone()))
        for i, (_, _, module) in enumerate(modules)]
    try:
        _outputs(pipe, call[0], 0)
    finally:
        for handle in handles:
            handle.remove()
    assert all(len(steps) == STEPS for steps in dense)  # one transformer pass per step
    candidates = [genaccel.ProxyAttentionConfig(window=(8, 8))]
    bar = SimpleNamespace(update=lambda n=1: None)
    measured = _measure(pipe, transformer, family, modules, call, candidates, 2, True, bar)
    assert measured.errors.shape == (len(modules), 2, 3)  # proxy, proxy +reuse, dense +reuse
    bounds = (*measured.phase_starts, STEPS)
    for i, outputs in enumerate(dense):
        for p in range(2):
            steps = range(bounds[p], bounds[p + 1])
            moved = sum(float((outputs[s - 1] - outputs[s]).square().sum()) for s in steps if s % 2 == 1)
            size = sum(float(outputs[s].square().sum()) for s in steps)
            np.testing.assert_allclose(measured.errors[i, p, 2], (moved / size) ** 0.5, rtol=1e-4)
    without = _measure(pipe, transformer, family, modules, call, candidates, 2, False, bar)
    np.testing.assert_array_equal(without.errors, measured.errors[:, :, :1])
