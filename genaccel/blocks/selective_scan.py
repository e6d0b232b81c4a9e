"""Mamba-1 selective scan: a sequential reference, a chunked parallel torch scan, mamba-ssm's kernel.

The recurrence, per channel d and state n (shapes follow mamba-ssm's `selective_scan_fn`):

    dt_t  = softplus(delta_t + delta_bias)          (softplus only if delta_softplus)
    x_t   = exp(dt_t * A[d, n]) * x_{t-1} + dt_t * B[n, t] * u_t
    y_t   = sum_n C[n, t] * x_t[n] + D[d] * u_t,     then y_t *= silu(z_t) if z is given

`backend="reference"` runs the loop above literally (the test oracle), `"chunked"` computes the same
linear recurrence chunk-parallel: all chunks advance together, then a recursive scan over chunk
carries corrects them (fast on CPU, any device), `"mamba_ssm"` calls mamba-ssm's CUDA kernel (imported lazily,
never required). `"auto"` picks `"mamba_ssm"` for CUDA tensors when mamba-ssm is importable and
`"chunked"` otherwise; an explicitly requested backend that cannot run raises instead of falling back.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "reference", "chunked", "mamba_ssm")


def mamba_ssm_available() -> bool:
    """Whether the optional mamba-ssm package can be imported (it is CUDA-only)."""
    return importlib.util.find_spec("mamba_ssm") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend `backend` means for tensors on `device`; raises if it cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "mamba_ssm" if device.type == "cuda" and mamba_ssm_available() else "chunked"
    if backend == "mamba_ssm":
        if not mamba_ssm_available():
            raise RuntimeError("selective-scan backend 'mamba_ssm' was requested but the mamba-ssm package is "
                               "not installed (it is CUDA-only: `pip install mamba-ssm` on a CUDA machine); "
                               "use backend='chunked' or 'reference' instead")
        if device.type != "cuda":
            raise ValueError(f"selective-scan backend 'mamba_ssm' needs CUDA tensors, got device {device}; "
                             "use backend='chunked' or 'reference' on this device")
    return backend


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                   backend: str = "auto", chunk_size: int = 32) -> torch.Tensor:
    """Selective scan over the last axis.

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or (batch, G, N, L) with G
    dividing dim (channel d uses group d // (dim // G)); D, delta_bias: (dim,). Returns y with
    u's shape and dtype (computed in at least float32).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    backend = resolve_backend(backend, u.device)
    if backend == "mamba_ssm":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
    dtype = torch.promote_types(u.dtype, torch.float32)
    u_, dt, A_, B_, C_ = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    B_, C_ = _per_channel(B_, u.shape[1]), _per_channel(C_, u.shape[1])  # (batch, dim, N, L)
    decay = torch.exp(dt[:, :, None, :] * A_[None, :, :, None])          # (batch, dim, N, L)
    drive = (dt * u_)[:, :, None, :] * B_
    if backend == "reference":
        y = _sequential_states_dot(decay, drive, C_)
    else:
        y = (linear_recurrence(decay, drive, chunk_size) * C_).sum(dim=2)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def _sequential_states_dot(decay: torch.Tensor, drive: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    state = torch.zeros_like(drive[..., 0])
    ys = []
    for t in range(drive.shape[-1]):
        state = decay[..., t] * state + drive[..., t]
        ys.append((state * C[..., t]).sum(dim=2))
    return torch.stack(ys, dim=-1)


def linear_recurrence(a: torch.Tensor, b: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """All states of x_t = a_t * x_{t-1} + b_t (x_{-1} = 0) along the last axis.

    The axis is cut into chunks of `chunk_size`; all chunks advance together, one time step per
    iteration (chunk_size iterations on time-major contiguous slices), starting from zero state.
    The state carried into each chunk is itself a linear recurrence over the chunks (factor: the
    chunk's product of a, input: its local end state), solved recursively; each local state is then
    corrected by (cumulative product of a) * carry. Only products of the given factors are formed,
    so decays in [0, 1] cannot overflow.
    """
    length = a.shape[-1]
    steps = min(chunk_size, length)
    n_chunks = -(-length // steps)
    pad = n_chunks * steps - length
    if pad:
        a = F.pad(a, (0, pad), value=1.0)
        b = F.pad(b, (0, pad), value=0.0)
    a = a.unflatten(-1, (n_chunks, steps)).movedim(-1, 0).contiguous()   # (steps, ..., n_chunks)
    b = b.unflatten(-1, (n_chunks, steps)).movedim(-1, 0).contiguous()
    local, a_cum = [b[0]], [a[0]]
    for t in range(1, steps):
        local.append(a[t] * local[-1] + b[t])
        a_cum.append(a[t] * a_cum[-1])
    if n_chunks > 1:
        carries = linear_recurrence(a_cum[-1], local[-1], chunk_size)    # state at each chunk's end
        carry_in = F.pad(carries[..., :-1], (1, 0), value=0.0)
        local = [state + decay * carry_in for state, decay in zip(local, a_cum)]
    return torch.stack(local, dim=-1).flatten(-2)[..., :length]


def _per_channel(bc: torch.Tensor, dim: int) -> torch.Tensor:
    if bc.dim() == 3:
        return bc[:, None]
    return bc.repeat_interleave(dim // bc.shape[1], dim=1)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must have shape (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape or (z is not None and z.shape != u.shape):
        raise ValueError(f"delta and z must match u's shape {tuple(u.shape)}, got delta "
                         f"{tuple(delta.shape)}, z {None if z is None else tuple(z.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim={dim}, N), got {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        ok = (t.dim() == 3 and t.shape == (batch, n_state, length)) or (
            t.dim() == 4 and t.shape[0] == batch and t.shape[2:] == (n_state, length) and dim % t.shape[1] == 0)
        if not ok:
            raise ValueError(f"{name} must have shape (batch, N, L) = {(batch, n_state, length)} or "
                             f"(batch, G, N, L) with G dividing dim={dim}, got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"{name} must have shape (dim,) = ({dim},), got {tuple(t.shape)}")
