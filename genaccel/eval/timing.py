"""Wall-clock timing that is fair to both sides: warm-up, synchronisation, median of runs."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Timing:
    median_s: float
    runs_s: list[float]
    peak_memory_bytes: int | None  # CUDA peak allocated during the timed runs; None on CPU

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def time_callable(fn: Callable[[], object], *, warmup: int = 2, runs: int = 5,
                  device: torch.device | str | None = None) -> Timing:
    """Run `fn` `warmup` times, then time `runs` calls and return their median.

    On CUDA each run is timed with CUDA events after a synchronize; on CPU with perf_counter.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1e3)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        for _ in range(runs):
            start_s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start_s)
        peak = None
    return Timing(median_s=statistics.median(times), runs_s=times, peak_memory_bytes=peak)


def time_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int = 1, runs: int = 5,
                     device: torch.device | str | None = None) -> dict[str, Timing]:
    """Time several callables round-robin (A, B, C, A, B, C, ...) and return each one's median.

    Interleaving makes a ratio between them robust to load that changes over time (a shared CPU).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(_time_once(fn, device))
    return {name: Timing(statistics.median(t), t, None) for name, t in times.items()}


def _time_once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s
