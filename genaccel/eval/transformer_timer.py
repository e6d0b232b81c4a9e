"""Time spent inside a transformer's forward calls, measured by hooks on the instance."""

from __future__ import annotations

import time

import torch


class TransformerTimer:
    """Context manager that sums the wall-clock time of every forward of `model` (synchronising CUDA)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.calls: list[float] = []
        self._start = 0.0
        self._handles: list = []

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _before(self, *_):
        self._sync()
        self._start = time.perf_counter()

    def _after(self, *_):
        self._sync()
        self.calls.append(time.perf_counter() - self._start)

    def __enter__(self) -> "TransformerTimer":
        self._handles = [self.model.register_forward_pre_hook(self._before),
                         self.model.register_forward_hook(self._after)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    @property
    def total_s(self) -> float:
        return sum(self.calls)
