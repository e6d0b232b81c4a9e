"""Step reuse: an attention block that returns, on odd denoising steps, its output of the step before.

DiTFastAttn's "attention sharing across timesteps": consecutive steps' attention outputs of many
blocks barely differ late in sampling, so computing them every other step halves that block's
attention and projection work there. A `SparsityPlan` choice `StepReuse(inner)` (written
"<inner> +reuse") computes `inner` (a sparse config, or None: dense) on even steps and reuses on
odd ones (the call's step index, counted by the pipeline's scheduler). Outputs are kept per pass,
so a pipeline that calls its transformer twice per step (classifier-free guidance in two passes)
reuses each pass's own output. A call of another number of steps than the plan's reuses on its own
odd steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from genaccel.config import SparseAttentionConfig


@dataclass(frozen=True)
class StepReuse:
    """Compute `inner` (None: dense) on even steps; return the previous step's output on odd steps."""

    inner: SparseAttentionConfig | None = None


def unwrap(choice: Any) -> SparseAttentionConfig | None:
    """The config a choice computes with (a StepReuse's inner one)."""
    return choice.inner if isinstance(choice, StepReuse) else choice


class StepOutputs:
    """One block's last computed output per pass of a step (pass: the transformer call within the step).

    Reuse happens only on odd steps and even steps always compute, so the output kept for a pass is
    always that pass's output of the step before, in this call. No step or call numbers are compared
    here: under torch.compile the graphs depend only on (phase, odd step, pass), a handful.
    """

    def __init__(self) -> None:
        self.outputs: list[Any] = []

    def run(self, pass_index: int, reuse: bool, compute: Callable[[], Any]) -> Any:
        """The kept output of `pass_index` where `reuse` (and one is kept), else `compute()`, kept."""
        if reuse and pass_index < len(self.outputs):
            return self.outputs[pass_index]
        output = compute()
        if pass_index < len(self.outputs):
            self.outputs[pass_index] = output
        else:
            self.outputs.append(output)
        return output


def step_reuse(call: Callable) -> Callable:
    """Decorates a family processor's `__call__`: blocks whose plan reuses steps go through StepOutputs.

    functools.wraps keeps the signature visible to diffusers, which filters attention kwargs by it.
    """
    @functools.wraps(call)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        if self.step_outputs is None:
            return call(self, *args, **kwargs)
        state = self.state
        reuse = state.odd_step and isinstance(self.raw_choice(), StepReuse)
        return self.step_outputs.run(state.pass_index, reuse, lambda: call(self, *args, **kwargs))

    return wrapper
