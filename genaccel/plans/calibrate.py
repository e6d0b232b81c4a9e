"""`genaccel.calibrate(pipe, calls, target_psnr=...)`: the fastest per-block, per-step plan within a fidelity budget.

How (DiTFastAttn-style, with the final output checked):
1. Measure: each call runs once dense. A forward hook on every attention module reruns that module
   with each candidate (dense trajectory, same inputs) and accumulates the candidate's relative error
   against the dense module output, per block and step; the step ranges (`phases`) pool them.
2. Search: a threshold t makes a plan: in every (block, phase) the cheapest candidate (cost model,
   `genaccel.plans.cost`) whose error is <= t, dense where none is. Larger t, cheaper plans. A
   bisection over the distinct plans runs each tried plan on every call and keeps the fastest whose
   worst output is within the budget plus `margin` of dense (the margin is for unseen calls). Errors
   of early steps grow through the later ones, which per-module errors do not see, so the search is
   repeated with the first one and two phases forced dense (half the trials go to the first search,
   the rest are shared; each later search starts above the threshold found so far).
Cost: one dense call per call, one rerun of the attention modules per candidate, `max_trials` sparse
runs per call; `plan.calibration["dense_generations"]` reports what it took in dense calls per call.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from genaccel.attention.layout import LayoutHook, LayoutState
from genaccel.attention.reuse import StepReuse
from genaccel.attention.steps import SchedulerStepCounter
from genaccel.config import ProxyAttentionConfig, SparseAttentionConfig, WindowAttentionConfig
from genaccel.eval.fidelity import psnr, ssim
from genaccel.plans.cost import CostModel
from genaccel.plans.plan import Choice, SparsityPlan, format_choice

DEFAULT_PHASES = 4
DEFAULT_MARGIN_DB = 1.0
DEFAULT_MARGIN_SSIM = 0.01
DEFAULT_MAX_TRIALS = 8
LEADING_DENSE_FAMILIES = 3  # plans searched with the first 0, 1 and 2 phases dense


def default_candidates(grid: tuple[int, ...], backend: str = "auto") -> list[SparseAttentionConfig]:
    """Proxy attention at windows of 1/2 and 1/4 of each spatial side (the whole clip in time), window
    attention at 1/2 unshifted and shifted, and for video proxy attention one frame per window. Each
    candidate costs one rerun of every attention module during measurement: few, and different."""
    *frames, height, width = grid
    half = (*frames, math.ceil(height / 2), math.ceil(width / 2))
    quarter = (*frames, math.ceil(height / 4), math.ceil(width / 4))
    found = [ProxyAttentionConfig(window=half, backend=backend), WindowAttentionConfig(window=half, backend=backend),
             WindowAttentionConfig(window=half, shift=True, backend=backend)]
    if min(quarter[-2:]) >= 2:
        found.insert(1, ProxyAttentionConfig(window=quarter, backend=backend))
    if frames and frames[0] > 1:
        found.append(ProxyAttentionConfig(window=(1, height, width), backend=backend))
    return found


def _flat(output: Any) -> torch.Tensor:
    """An attention module's output (a tensor or a tuple of them) as one float vector."""
    tensors = [output] if torch.is_tensor(output) else [t for t in output if torch.is_tensor(t)]
    return torch.cat([t.detach().float().reshape(-1) for t in tensors])


class _ErrorRecorder:
    """Forward hook on one attention module: reruns it with every candidate and accumulates the
    squared error against the dense output, per (step, option). Options: the K candidates, then (with
    `step_reuse`) each candidate and dense with step reuse: their error on odd steps is that of the
    previous even step's output, on even steps that of computing it. Only even steps' outputs are
    kept, per pass, in the module's dtype, until the next step (memory: one step of K + 1 outputs)."""

    def __init__(self, family, block_index: int, state: LayoutState, counter: SchedulerStepCounter,
                 candidates: Callable[[tuple[int, ...]], list[SparseAttentionConfig]], step_reuse: bool):
        self.family, self.block_index, self.state, self.counter = family, block_index, state, counter
        self.candidates = candidates
        self.step_reuse = step_reuse
        self.processors: list | None = None
        self.squared_error: dict[tuple[int, int], float] = {}  # (step, option) -> sum of squares
        self.reference: dict[int, float] = {}  # step -> sum of squares of the dense output
        self.running = False
        self.key: tuple[int, int] | None = None  # (call, step) of the calls being counted in `passes`
        self.passes = 0
        self.kept: list[list[torch.Tensor]] = []  # per pass of the last even step: candidates', then dense's output
        self.kept_key: tuple[int, int] | None = None

    def __call__(self, module, args, kwargs, output) -> None:
        if self.running or self.state.grid is None:
            return
        original = module.processor
        if self.processors is None:
            self.processors = [self.family.processor(original, config, self.state, self.block_index)
                               for config in self.candidates(self.state.grid)]
        call, step = self.state.call, self.counter.step
        if (call, step) != self.key:
            self.key, self.passes = (call, step), 0
            if step % 2 == 0:
                self.kept, self.kept_key = [], (call, step)
        dense = _flat(output)
        self.reference[step] = self.reference.get(step, 0.0) + float(dense.square().sum())
        self.running = True
        try:
            outputs = []
            for processor in self.processors:
                module.processor = processor
                outputs.append(_flat(module(*args, **kwargs)))
        finally:
            module.processor = original
            self.running = False
        outputs.append(dense)
        options = outputs[:-1]
        if self.step_reuse:
            if step % 2 == 0:
                dtype = (output if torch.is_tensor(output) else output[0]).dtype
                self.kept.append([o.to(dtype) for o in outputs])
                options = options + outputs
            elif self.kept_key == (call, step - 1) and self.passes < len(self.kept):
                options = options + [o.float() for o in self.kept[self.passes]]
            else:  # nothing to reuse: the block computes, as the processor does
                options = options + outputs
        self.passes += 1
        for index, computed in enumerate(options):
            error = float((computed - dense).square().sum())
            self.squared_error[step, index] = self.squared_error.get((step, index), 0.0) + error


@dataclass
class _Measurement:
    errors: np.ndarray  # (blocks, phases, options) relative error of the module output vs dense
    candidates: list[SparseAttentionConfig]  # the K computed ones; options add StepReuse of each and of dense
    grid: tuple[int, ...]
    steps: int
    phase_starts: tuple[int, ...]
    references: list[list[np.ndarray]]  # per call, its dense outputs as uint8


def _outputs(pipe, call: dict, index: int) -> list[np.ndarray]:
    """One pipeline call's outputs as uint8 arrays ((H, W, 3) images or (T, H, W, 3) clips), seeded afresh."""
    kwargs = {k: v for k, v in call.items() if k != "seed"}
    device = getattr(pipe, "device", torch.device("cpu"))
    kwargs["generator"] = torch.Generator(device=device).manual_seed(int(call.get("seed", index)))
    kwargs.setdefault("output_type", "np")
    output = pipe(**kwargs)
    result = output.frames if hasattr(output, "frames") else output.images
    return [(np.clip(np.asarray(item, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8) for item in result]


def _check_calls(calls: Sequence[dict]) -> list[dict]:
    calls = list(calls)
    if not calls or any(not isinstance(c, dict) for c in calls):
        raise ValueError("calls must be a non-empty list of keyword dicts for pipe(...), e.g. "
                         "[{'class_labels': [3], 'num_inference_steps': 20, 'seed': 0}]")
    for call in calls:
        if "generator" in call:
            raise ValueError("give calibration calls a `seed` instead of a `generator`: each call runs several "
                             "times, each time from the same seed")
        if call.get("output_type", "np") != "np":
            raise ValueError("calibration compares outputs as arrays; leave output_type unset in calls")
    return calls


def _measure(pipe, transformer, family, modules, calls, candidates, phases: int, step_reuse: bool,
             bar) -> _Measurement:
    state = LayoutState()
    counter = SchedulerStepCounter(pipe, [state], 0)
    grid_recorder = family.record_grid(pipe, [state]) if family.record_grid is not None else None
    hook = LayoutHook(transformer, family, state)
    grids: set[tuple[int, ...]] = set()

    def record_grid(module, args, kwargs):
        hook(module, args, kwargs)
        grids.add(state.grid)

    chosen: list[SparseAttentionConfig] = []

    def candidates_at(grid):
        if not chosen:
            chosen.extend(candidates if candidates is not None else default_candidates(grid))
        return chosen

    recorders = [_ErrorRecorder(family, block, state, counter, candidates_at, step_reuse) for block, _, _ in modules]
    handles = [transformer.register_forward_pre_hook(record_grid, with_kwargs=True)]
    handles += [module.register_forward_hook(recorder, with_kwargs=True)
                for recorder, (_, _, module) in zip(recorders, modules)]
    references, steps_seen = [], set()
    try:
        for index, call in enumerate(calls):
            references.append(_outputs(pipe, call, index))
            steps_seen.add(counter.step)
            bar.update(1)
    finally:
        for handle in handles:
            handle.remove()
        counter.restore()
        if grid_recorder is not None:
            grid_recorder.restore()
    if len(grids) != 1:
        raise ValueError(f"calibration calls must share one token grid (one output size); got {sorted(grids)}: "
                         "calibrate one plan per size")
    if len(steps_seen) != 1:
        raise ValueError(f"calibration calls must share one number of denoising steps; got {sorted(steps_seen)}")
    steps = steps_seen.pop()
    if steps < 1:
        raise ValueError("the pipeline made no scheduler steps during calibration")
    phases = max(1, min(phases, steps))
    phase_starts = tuple(sorted({round(p * steps / phases) for p in range(phases)}))
    bounds = (*phase_starts, steps)
    errors = np.zeros((len(modules), len(phase_starts), 2 * len(chosen) + 1 if step_reuse else len(chosen)))
    for block, recorder in enumerate(recorders):
        for p in range(len(phase_starts)):
            step_range = range(bounds[p], bounds[p + 1])
            reference = sum(recorder.reference.get(s, 0.0) for s in step_range)
            for c in range(errors.shape[2]):
                error = sum(recorder.squared_error.get((s, c), 0.0) for s in step_range)
                errors[block, p, c] = math.sqrt(error / reference) if reference > 0 else 0.0
    return _Measurement(errors, chosen, grids.pop(), steps, phase_starts, references)


def _threshold_plans(errors: np.ndarray, flops: np.ndarray, candidates: list) -> list[tuple[float, list]]:
    """(threshold, choices) for every distinct plan a threshold makes, from the most faithful to the cheapest."""
    plans, seen = [], set()
    for threshold in np.unique(errors[np.isfinite(errors)]):
        choices = _plan_choices(errors, flops, candidates, float(threshold))
        key = tuple(format_choice(c) for row in choices for c in row)
        if key not in seen:
            seen.add(key)
            plans.append((float(threshold), choices))
    return plans


def _plan_choices(errors: np.ndarray, flops: np.ndarray, candidates: list, threshold: float) -> list[list[Choice]]:
    """Per (block, phase): the cheapest candidate with error <= threshold that is cheaper than dense."""
    plan = []
    for block in range(errors.shape[0]):
        row = []
        for phase in range(errors.shape[1]):
            allowed = [c for c in range(len(candidates))
                       if errors[block, phase, c] <= threshold and flops[block, c] < flops[block, -1]]
            row.append(candidates[min(allowed, key=lambda c: flops[block, c])] if allowed else None)
        plan.append(row)
    return plan


def calibrate(pipe, calls: Sequence[dict], target_psnr: float | None = None, *, target_ssim: float | None = None,
              candidates: Sequence[SparseAttentionConfig] | None = None, phases: int = DEFAULT_PHASES,
              margin: float | None = None, max_trials: int = DEFAULT_MAX_TRIALS, step_reuse: bool = True,
              backend: str = "auto", progress: bool = True) -> SparsityPlan:
    """The plan with the highest modelled speed-up whose outputs on `calls` keep PSNR >= `target_psnr` +
    `margin` dB (default 1 dB) against dense, worst output counted; or SSIM >= `target_ssim` + margin
    (default 0.01). The margin is what the promise on calls not calibrated on rests on.

    calls: keyword dicts for `pipe(...)`, each with a `seed` (a fresh generator per run), one output size
        and one number of steps. candidates: sparse configs to choose from (shift True / False; default
        `default_candidates` of the token grid). phases: step ranges with their own choices.
        step_reuse: also offer each candidate and dense with step reuse ("+reuse": odd steps return the
        block's previous output; measured from the same runs, no extra cost).
    """
    from genaccel.api import _attention_modules, _transformers_of

    if isinstance(pipe, torch.nn.Module):
        raise TypeError("genaccel.calibrate takes the pipeline (it runs whole generations), not its transformer")
    if (target_psnr is None) == (target_ssim is None):
        raise ValueError("give one fidelity target: target_psnr (dB against dense, e.g. 30) or target_ssim (e.g. 0.95)")
    metric, target = ("ssim", target_ssim) if target_ssim is not None else ("psnr", target_psnr)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
        raise ValueError(f"target_{metric} must be a finite number, got {target!r}")
    margin = (DEFAULT_MARGIN_DB if metric == "psnr" else DEFAULT_MARGIN_SSIM) if margin is None else margin
    if not isinstance(margin, (int, float)) or margin < 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    if not isinstance(phases, int) or phases < 1:
        raise ValueError(f"phases must be an integer >= 1, got {phases!r}")
    if not isinstance(step_reuse, bool):
        raise ValueError(f"step_reuse must be True or False, got {step_reuse!r}")
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an integer >= 1, got {max_trials!r}")
    if candidates is not None:
        candidates = list(candidates)
        if not candidates or any(not isinstance(c, SparseAttentionConfig) for c in candidates):
            raise ValueError("candidates must be a non-empty list of ProxyAttentionConfig / WindowAttentionConfig")
        for config in candidates:
            format_choice(config)  # refuses shift="alternate"
            if config.dense_steps or config.dense_blocks:
                raise ValueError("candidates are per block and step already: leave dense_steps / dense_blocks unset")
    calls = _check_calls(calls)
    models = _transformers_of(pipe)
    if len(models) > 1:
        raise NotImplementedError("calibrate covers pipelines with one transformer; this one has transformer_2")
    transformer = models[0]
    from genaccel.api import _PATCH_ATTRIBUTE
    from genaccel.attention.families import family_of

    if getattr(transformer, _PATCH_ATTRIBUTE, None) is not None:
        raise ValueError("this pipeline already has genaccel attention applied; genaccel.remove(pipe) first")
    family = family_of(transformer)
    modules = _attention_modules(transformer, family)
    bar_config = dict(getattr(pipe, "_progress_bar_config", {}))
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    try:
        best, trials, threshold, lead, scores, options, seconds, dense_seconds = _search(
            pipe, transformer, family, modules, calls, candidates, phases, metric, target, margin, max_trials,
            backend, progress, step_reuse)
    finally:
        if hasattr(pipe, "set_progress_bar_config"):
            pipe._progress_bar_config = bar_config
    if best.is_dense():
        warnings.warn(f"genaccel.calibrate: no plan it tried kept every call within {metric} {target} (+ margin "
                      f"{margin}) of dense; the plan is dense everywhere", stacklevel=2)
    worst = min(scores)
    best.calibration = {
        "target": {metric: target}, "margin": margin, "calls": len(calls),
        "worst_on_calls": worst if math.isfinite(worst) else None,
        "search": "threshold bisection over per-block relative errors, with the first 0, 1, 2 phases kept dense"
                  + ("; candidates also with +reuse" if step_reuse else ""),
        "threshold": threshold, "dense_leading_phases": lead, "trials": trials,
        "candidates": [format_choice(c) for c in options], "seconds": round(seconds, 2),
        "dense_generations": round(seconds / (dense_seconds * len(calls)), 2),
    }
    return best


def _search(pipe, transformer, family, modules, calls, candidates, phases, metric, target, margin, max_trials,
            backend, progress, step_reuse):
    """Measure, then bisect over the threshold plans: (plan, trials, threshold, its scores, candidates,
    seconds, seconds of one dense call)."""
    import genaccel

    started = time.perf_counter()
    with tqdm(total=1 + len(calls) * (1 + max_trials), desc="calibrate", disable=not progress, unit="call") as bar:
        dense_started = time.perf_counter()
        _outputs(pipe, calls[0], 0)  # one plain dense call: the unit of cost, and a warm-up
        dense_seconds = time.perf_counter() - dense_started
        bar.update(1)
        measured = _measure(pipe, transformer, family, modules, calls, candidates, phases, step_reuse, bar)
        cost_model = CostModel.of(transformer, [module for _, _, module in modules], measured.grid)
        computed = [c.__class__(window=c.window, shift=c.shift, backend=backend) for c in measured.candidates]
        options = computed + [StepReuse(c) for c in computed] + [StepReuse(None)]
        errors = measured.errors
        options = options[:errors.shape[2]]

        def cost(block: int, choice) -> float:  # per step on average: a reused block computes every other step
            own = 2.0 * cost_model.tokens * cost_model.attention_parameters[block]
            if isinstance(choice, StepReuse):
                return 0.5 * (own + cost_model.attention_flops(block, choice.inner))
            return own + cost_model.attention_flops(block, choice)

        flops = np.array([[cost(b, c) for c in options] + [cost(b, None)] for b in range(len(modules))])
        def make(choices):
            return SparsityPlan(choices, measured.phase_starts, measured.steps, cost_model,
                                type(transformer).__name__, backend)

        def score(plan: SparsityPlan) -> list[float]:
            genaccel.apply(pipe, plan)
            try:
                values = []
                for index, call in enumerate(calls):
                    outputs = _outputs(pipe, call, index)
                    fidelity = psnr if metric == "psnr" else ssim
                    values += [fidelity(a, b) for a, b in zip(outputs, measured.references[index])]
                    bar.update(1)
                    if min(values) < target + margin:
                        break  # the plan fails: the remaining calls cannot save it
            finally:
                genaccel.remove(pipe)
            return values

        best = make([[None] * len(measured.phase_starts) for _ in modules])
        best_scores: list[float] = [math.inf]
        best_threshold, best_lead, trials = 0.0, 0, 0
        families = min(LEADING_DENSE_FAMILIES, len(measured.phase_starts))
        budgets = [max_trials - (families - 1) * (max_trials // (2 * max(families - 1, 1)))] + \
            [max_trials // (2 * max(families - 1, 1))] * (families - 1)
        for lead, budget in enumerate(budgets):
            lead_errors = errors.copy()
            lead_errors[:, :lead] = np.inf  # the first `lead` phases stay dense
            plans = _threshold_plans(lead_errors, flops, options)
            # forcing phases dense only makes a plan more faithful: start above the best threshold so far
            low = next((i for i, (t, _) in enumerate(plans) if t >= best_threshold), len(plans)) if lead else 0
            high, used = len(plans) - 1, 0
            while low <= high and used < budget:
                middle = (low + high + 1) // 2
                threshold, choices = plans[middle]
                candidate = make(choices)
                if candidate.is_dense():
                    low = middle + 1
                    continue
                used += 1
                values = score(candidate)
                if min(values) >= target + margin:
                    if candidate.expected_speedup > best.expected_speedup:
                        best, best_scores, best_threshold, best_lead = candidate, values, threshold, lead
                    low = middle + 1
                else:
                    high = middle - 1
            trials += used
        bar.update(bar.total - bar.n)
    return (best, trials, best_threshold, best_lead, best_scores, options, time.perf_counter() - started,
            dense_seconds)
