"""Backends that run windowed (and proxy) attention, all computing the same function.

Each query attends a near field (its own window's real tokens) and a far field (one proxy per other
window, the mean key / mean value, with log(count) added to its logit so one proxy carries the mass
of the tokens it stands for; plus any prefix (text) tokens), in one softmax:

| backend | how | autograd | `auto` picks it |
|---|---|---|---|
| `triton` | one fused online-softmax pass per query block over [own window, proxies, prefix] | no | CUDA inference (Triton installed) |
| `split` | near and far field as two fused kernels, merged by log-sum-exp | no | CPU inference; CUDA inference without Triton |
| `concat` | one SDPA over per-window key sets (far field copied per window) | yes | CPU training |
| `flex` | FlexAttention with a block mask | yes (CUDA) | CUDA training |
| `xformers` | xformers' memory-efficient attention over per-window key sets | no | never |
| `reference` | dense masked attention in float32 (the oracle) | yes | never |

"Training" means autograd is recording and an input requires grad. A backend that was asked for by
name and cannot run raises; none is swapped in silently.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from genaccel.attention.backends.concat import concat_attention
from genaccel.attention.backends.flex import flex_sparse_attention
from genaccel.attention.backends.reference import reference_sparse_attention
from genaccel.attention.backends.split import split_attention
from genaccel.attention.backends.xformers import xformers_attention
from genaccel.attention.partition import WindowPartition

BACKENDS = ("auto", "triton", "split", "concat", "flex", "xformers", "reference")
_DIFFERENTIABLE = ("concat", "flex", "reference")


def triton_interpreted() -> bool:
    """Whether Triton kernels run under Triton's CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device, needs_grad: bool = False) -> str:
    """The backend that will run for tensors on `device`; raises when the requested one cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        if device.type == "cuda":
            return "flex" if needs_grad else ("triton" if _triton_installed() else "split")
        return "concat" if needs_grad else "split"
    if needs_grad and backend not in _DIFFERENTIABLE:
        raise RuntimeError(f"backend={backend!r} is for inference (no backward); an input requires grad. "
                           f"Use backend='auto' (picks a differentiable one), {', '.join(map(repr, _DIFFERENTIABLE))}, "
                           "or run under torch.no_grad().")
    if backend == "triton":
        if not _triton_installed():
            raise RuntimeError("backend='triton' needs the triton package: pip install triton")
        if device.type != "cuda" and not triton_interpreted():
            raise RuntimeError(f"backend='triton' runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1, "
                               f"for tests); tensors are on {device}. Use backend='auto' or 'split'.")
    if backend == "split" and device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"backend='split' runs on CPU and CUDA tensors; tensors are on {device}")
    if backend == "flex" and needs_grad and device.type != "cuda":
        raise RuntimeError("backend='flex' has no backward on CPU (FlexAttention's limitation); "
                           "use backend='concat' or 'auto' for training on CPU")
    if backend == "xformers":
        if importlib.util.find_spec("xformers") is None:
            raise RuntimeError("backend='xformers' needs the xformers package: pip install 'genaccel[xformers]'")
        if device.type != "cuda":
            raise RuntimeError(f"backend='xformers' runs on CUDA only; tensors are on {device}. "
                               "Use backend='auto', 'split' or 'concat'.")
    return backend


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def run_windowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, partition: WindowPartition, *,
                 proxies: bool, scale: float, backend: str,
                 prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                 position_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch one windowed / proxy attention to the resolved backend."""
    prefix = prefix_kv if prefix_kv is not None else (None, None)
    backend = resolve_backend(backend, q.device, _needs_grad(q, k, v, *prefix, position_bias))
    if backend == "reference":
        return reference_sparse_attention(q, k, v, partition, proxies=proxies, scale=scale, prefix_kv=prefix_kv,
                                          position_bias=position_bias).to(q.dtype)
    if backend == "triton":
        from genaccel.attention.backends.triton_kernel import triton_sparse_attention

        return triton_sparse_attention(q, k, v, partition, proxies, prefix_kv, scale, position_bias)
    kernel = {"split": split_attention, "concat": concat_attention, "flex": flex_sparse_attention,
              "xformers": xformers_attention}[backend]
    return kernel(q, k, v, partition, proxies, prefix_kv, scale, position_bias)
