"""The token layout of each transformer call, recorded by a forward pre-hook on the instance.

Attention processors do not see the latent's shape, so a pre-hook on the transformer records the
token grid (frames, height, width after patchify) before every forward, read from input shapes
(static under torch.compile). Whether the current step is dense is set by the step counters in
`steps.py` and read by the processors as a plain bool, so a compiled model has at most one graph
per (dense, sparse) state, or per step range (phase) of a `SparsityPlan`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from genaccel.attention.families.base import ModelFamily


@dataclass
class LayoutState:
    """Shared by the hook and counters (writers) and the processors (readers) of one patched transformer."""

    grid: tuple[int, ...] | None = None
    dense: bool = False  # the current step keeps dense attention (dense_steps)
    phase: int = 0  # the current step range of a SparsityPlan (its processors' choice index)
    odd_step: bool = False  # the current step index is odd (plans' "+reuse" choices reuse there)
    pass_index: int = 0  # which transformer call of the current step this is (0, or 1 for a second CFG pass)
    passes: int = 0  # transformer calls so far in the current step
    count_passes: bool = False  # set for plans with "+reuse" choices (the step counter resets `passes`)
    call: int = 0  # pipeline calls so far (calibration tells one call's steps from the next one's)
    recorded_grid: tuple[int, ...] | None = None  # set from the pipeline when the grid needs tensor values (Flux)


class LayoutHook:
    """Forward pre-hook (with kwargs) that records the token grid before each transformer call."""

    def __init__(self, transformer: torch.nn.Module, family: "ModelFamily", state: LayoutState,
                 observers: tuple[Callable[[dict], None], ...] = ()):
        self.signature = inspect.signature(transformer.forward)
        self.config = transformer.config
        self.family = family
        self.state = state
        self.observers = observers  # called with the bound inputs (step counting from the timestep, checks)

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        inputs = self.signature.bind_partial(*args, **kwargs).arguments
        self.state.grid = self._grid(inputs)
        if self.state.count_passes:  # only plans that reuse steps: a counter would be a guard under compile
            self.state.pass_index = self.state.passes
            self.state.passes += 1
        for observe in self.observers:
            observe(inputs)

    def _grid(self, inputs: dict) -> tuple[int, ...]:
        if not self.family.grid_needs_data:
            return tuple(self.family.read_grid(self.config, inputs))
        recorded = self.state.recorded_grid
        if recorded is None:
            if torch.compiler.is_compiling():
                raise RuntimeError(
                    f"genaccel: the {self.family.name} token grid is read from tensor values, which torch.compile "
                    "cannot do without a graph break; apply genaccel to the pipeline (genaccel.apply(pipe, ...)), "
                    "which records the grid when it prepares its latents, or run this transformer uncompiled")
            return tuple(self.family.read_grid(self.config, inputs))
        tokens = inputs["img_ids"].shape[-2]
        if tokens != math.prod(recorded):
            raise ValueError(f"genaccel: the pipeline prepared a {recorded} token grid but the transformer got "
                             f"{tokens} image tokens (several images, e.g. Flux Kontext references, are not supported)")
        return recorded
