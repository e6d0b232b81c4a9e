"""Step reuse: an attention block that returns, on odd denoising steps, its output of the step before.

DiTFastAttn's "attention sharing across timesteps": consecutive steps' attention outputs of many
blocks barely differ late in sampling, so computing them every other step halves that block's
attention and projection work there. A `SparsityPlan` choice `StepReuse(inner)` (written
"<inner> +reuse") computes `inner` (a sparse config, or None: dense) on even steps and reuses on
odd ones (the call's step index, counted by the pipeline's scheduler). Outputs are kept per pass,
so a pipeline that calls its transformer twice per step (classifier-free guidance in two passes)
reuses each pass's own output.
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
    """One block's outputs, per pass, of the current and the previous (call, step)."""

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.now: list[Any] = []
        self.before_key: tuple[int, int] | None = None
        self.before: list[Any] = []

    def run(self, call: int, step: int, reuse: bool, compute: Callable[[], Any]) -> Any:
        """`compute()`, or where `reuse` and this pass has an output from step - 1 of this call, that output."""
        if (call, step) != self.key:
            self.before_key, self.before = self.key, self.now
            self.key, self.now = (call, step), []
        index = len(self.now)
        if reuse and self.before_key == (call, step - 1) and index < len(self.before):
            output = self.before[index]
        else:
            output = compute()
        self.now.append(output)
        return output

    def clear(self) -> None:
        self.__init__()


def step_reuse(call: Callable) -> Callable:
    """Decorates a family processor's `__call__`: blocks whose plan reuses steps go through StepOutputs.

    functools.wraps keeps the signature visible to diffusers, which filters attention kwargs by it.
    """
    @functools.wraps(call)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        if self.step_outputs is None:
            return call(self, *args, **kwargs)
        state = self.state
        reuse = isinstance(self.raw_choice(), StepReuse) and state.step % 2 == 1
        return self.step_outputs.run(state.call, state.step, reuse, lambda: call(self, *args, **kwargs))

    return wrapper
