"""Which denoising steps keep dense attention (`dense_steps=k`), and which step range (phase) of a
`SparsityPlan` a step is in: counting steps per pipeline call.

With a pipeline, steps are counted by its scheduler, patched on the instance: `set_timesteps`
starts a pipeline call (step 0) and every `step` ends one denoising step. So a call's first k steps
are dense however many transformers the pipeline has (Wan 2.2's `transformer` and `transformer_2`
share one count) and however many transformer calls a step makes (separate CFG passes). This runs
outside the transformer, so a compiled transformer only sees a bool that flips once per call.

A transformer given without its pipeline counts from its `timestep` argument: a lower timestep is
the next step, a higher one starts a new call. That reads a tensor value (a host sync), so it does
not run under torch.compile: apply to the pipeline there.

A plan's step ranges are in steps of its calibration (`calibrated_steps`); a call with another
number of steps maps its step i to calibrated step i * calibrated_steps // steps of the call.
"""

from __future__ import annotations

import bisect
import weakref
from typing import Any

import torch

from genaccel.attention.layout import LayoutState


class SchedulerStepCounter:
    """Counts the steps of a pipeline's scheduler and sets `dense` and `phase` on every patched
    transformer's state (`phase_starts`: the first calibrated step of each plan phase)."""

    def __init__(self, pipeline: Any, states: list[LayoutState], dense_steps: int,
                 phase_starts: tuple[int, ...] = (0,), calibrated_steps: int | None = None):
        scheduler = getattr(pipeline, "scheduler", None)
        if scheduler is None or not callable(getattr(scheduler, "set_timesteps", None)) \
                or not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"dense_steps needs the pipeline's scheduler (with set_timesteps and step) to count "
                            f"denoising steps; {type(pipeline).__name__}.scheduler is {type(scheduler).__name__}")
        self.pipeline = weakref.ref(pipeline)
        self.scheduler = scheduler
        self.states = states
        self.dense_steps = dense_steps
        self.phase_starts = phase_starts
        self.calibrated_steps = calibrated_steps
        self.call_steps: int | None = None  # steps of the current call (len(scheduler.timesteps))
        self.step = 0
        self._own = {name: scheduler.__dict__[name] for name in ("set_timesteps", "step") if name in scheduler.__dict__}
        original_set_timesteps, original_step = scheduler.set_timesteps, scheduler.step

        def set_timesteps(*args, **kwargs):
            for state in self.states:
                state.call += 1
            self._moved_to(0)
            result = original_set_timesteps(*args, **kwargs)
            timesteps = getattr(scheduler, "timesteps", None)
            self.call_steps = len(timesteps) if timesteps is not None else None
            self._moved_to(0)
            return result

        def step(*args, **kwargs):
            result = original_step(*args, **kwargs)
            self._moved_to(self.step + 1)
            return result

        scheduler.set_timesteps, scheduler.step = set_timesteps, step
        self._moved_to(0)

    def phase_of(self, step: int) -> int:
        """The plan phase of this call's `step` (0 without a plan)."""
        if len(self.phase_starts) == 1:
            return 0
        if self.calibrated_steps and self.call_steps:
            step = step * self.calibrated_steps // self.call_steps
        return bisect.bisect_right(self.phase_starts, step) - 1

    def _moved_to(self, step: int) -> None:
        self.step = step
        phase = self.phase_of(step)
        for state in self.states:
            state.dense = step < self.dense_steps
            state.phase = phase
            state.odd_step = step % 2 == 1
            state.passes = 0

    def check_scheduler(self, inputs: dict) -> None:
        """Observer on each transformer call: the steps are only counted on the scheduler that was patched."""
        if torch.compiler.is_compiling():
            return
        pipeline = self.pipeline()
        if pipeline is not None and getattr(pipeline, "scheduler", None) is not self.scheduler:
            raise RuntimeError("genaccel: the pipeline's scheduler was replaced after genaccel.apply, so dense_steps "
                               "cannot count its steps; call genaccel.remove(pipe), set the scheduler, then apply again")

    def restore(self) -> None:
        """Give the scheduler back its own methods (instance attributes removed, or the previous ones back)."""
        for name in ("set_timesteps", "step"):
            if name in self._own:
                setattr(self.scheduler, name, self._own[name])
            else:
                self.scheduler.__dict__.pop(name, None)


class TimestepStepCounter:
    """Counts steps of a bare transformer from its `timestep` argument (eager only)."""

    def __init__(self, state: LayoutState, dense_steps: int):
        self.state = state
        self.dense_steps = dense_steps
        self.step = 0
        self.last_timestep: float | None = None
        state.dense = dense_steps > 0

    def advance(self, timestep: float) -> None:
        if self.last_timestep is None or timestep > self.last_timestep:
            self.step = 0
        elif timestep < self.last_timestep:
            self.step += 1
        self.last_timestep = timestep
        self.state.dense = self.step < self.dense_steps

    def observe(self, inputs: dict) -> None:
        timestep = inputs.get("timestep")
        if timestep is None:
            raise ValueError("dense_steps on a transformer without its pipeline counts steps from the `timestep` "
                             "argument, which this call did not pass; apply genaccel to the pipeline instead")
        if torch.compiler.is_compiling():
            raise RuntimeError("genaccel: dense_steps on a transformer without its pipeline reads the timestep's "
                               "value (a host sync torch.compile cannot trace); apply genaccel to the pipeline "
                               "(genaccel.apply(pipe, ...)) so its scheduler counts the steps")
        self.advance(timestep.float().max().item() if torch.is_tensor(timestep) else float(timestep))
