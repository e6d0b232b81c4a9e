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
