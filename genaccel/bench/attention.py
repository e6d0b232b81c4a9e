"""Dense SDPA vs window vs proxy attention at PixArt's and CogVideoX-5B's attention geometries.

Both sides run in one process, interleaved, median of `runs` after warm-up. The ideal ratio is the
dense FLOPs over the sparse FLOPs (keys attended per query, padding and proxies included); the share
reached is the measured speedup over that ideal.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genaccel.attention.ops import proxy_attention, window_attention
from genaccel.attention.partition import keys_per_query
from genaccel.eval.timing import time_interleaved


@dataclass(frozen=True)
class Geometry:
    name: str
    grid: tuple[int, ...]
    heads: int
    head_dim: int


def image_geometries(device: torch.device) -> list[Geometry]:
    """Square token grids with PixArt's heads (16 x 72): 1k-16k tokens, and 64k on CUDA (dense attention
    at 64k tokens is minutes per call on a CPU)."""
    sizes = (1024, 4096, 16384) + ((65536,) if device.type == "cuda" else ())
    return [Geometry(f"{n // 1024}k image tokens", (math.isqrt(n),) * 2, 16, 72) for n in sizes]



VIDEO_GEOMETRY = Geometry("CogVideoX-5B video (13x30x45)", (13, 30, 45), 48, 64)
METHODS = [("window", (8, 8)), ("proxy", (8, 8)), ("proxy", (4, 4))]


def run_geometry(geometry: Geometry, *, device: torch.device, dtype: torch.dtype, runs: int, warmup: int,
                 batch: int = 1) -> list[dict]:
    n_tokens = math.prod(geometry.grid)
    q, k, v = (torch.randn(batch, geometry.heads, n_tokens, geometry.head_dim, device=device, dtype=dtype)
               for _ in range(3))
    fns = {"dense": lambda: F.scaled_dot_product_attention(q, k, v)}
    for method, window in METHODS:
        op = window_attention if method == "window" else proxy_attention
        full_window = (1, *window) if len(geometry.grid) == 3 else window
        fns[f"{method} {'x'.join(map(str, window))}"] = (
            lambda op=op, w=full_window: op(q, k, v, geometry.grid, w))
    with torch.no_grad():
        timings = time_interleaved(fns, warmup=warmup, runs=runs, device=device)
    dense_s = timings["dense"].median_s
    rows = []
    for name, timing in timings.items():
        if name == "dense":
            ideal = 1.0
        else:
            method, window_text = name.split()
            window = tuple(int(x) for x in window_text.split("x"))
            ideal = n_tokens / keys_per_query(method, geometry.grid, window)
        speedup = dense_s / timing.median_s
        rows.append(dict(geometry=geometry.name, tokens=n_tokens, heads=f"{geometry.heads}x{geometry.head_dim}",
                         method=name, median_ms=timing.median_ms, speedup=speedup, ideal=ideal,
                         share=speedup / ideal, runs=runs))
    return rows


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
