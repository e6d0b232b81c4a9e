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
    batch, dim, length = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    time_major = lambda t: t.permute(2, 0, 1).contiguous().view(length, batch, groups, dim // groups)  # noqa: E731
    per_step = lambda t: t.reshape(batch, groups, A.shape[1], length).permute(3, 0, 1, 2)  # noqa: E731
    y = selective_scan_time_major(time_major(u), time_major(delta), A, per_step(B), per_step(C), D,
                                  delta_bias, delta_softplus, backend=backend, chunk_size=chunk_size)
    y = y.reshape(length, batch, dim)
    if z is not None:
        y = y * F.silu(z.to(y.dtype).permute(2, 0, 1))
    return y.permute(1, 2, 0)  # a (batch, dim, L) view of the time-major result


def selective_scan_time_major(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, D: torch.Tensor | None = None,
                              delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                              backend: str = "auto", chunk_size: int = 32) -> torch.Tensor:
    """The same scan in time-major layout, which the torch backends compute in (no transposes).

    u, delta: (L, batch, G, P) for dim = G * P channels in G groups; A: (dim, N); B, C:
    (L, batch, G, N); D, delta_bias: (dim,). Returns (L, batch, G, P) in u's dtype.
    """
    length, batch, groups, per_group = u.shape
    n_state = A.shape[1]
    if delta.shape != u.shape or A.shape[0] != groups * per_group or B.shape != (length, batch, groups, n_state) \
            or C.shape != B.shape:
        raise ValueError(f"time-major scan needs u, delta (L, batch, G, P), A (G*P, N), B, C (L, batch, G, N); got "
                         f"u {tuple(u.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, "
                         f"C {tuple(C.shape)}")
    backend = resolve_backend(backend, u.device)
    if backend == "mamba_ssm":
        channels_last = lambda t: t.permute(1, 2, 3, 0).reshape(batch, groups * per_group, length)  # noqa: E731
        y = selective_scan(channels_last(u), channels_last(delta), A, B.permute(1, 2, 3, 0).contiguous(),
                           C.permute(1, 2, 3, 0).contiguous(), D, None, delta_bias, delta_softplus,
                           backend="mamba_ssm")
        return y.view(batch, groups, per_group, length).permute(3, 0, 1, 2)
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
    dtype = torch.promote_types(u.dtype, torch.float32)
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype).view(groups, per_group)
    if delta_softplus:
        dt = F.softplus(dt)
    # materialise (L, batch, G, P, N) contiguously: elementwise results inherit their inputs' strides,
    # and the recurrence wants each time step contiguous
    decay = torch.exp(dt[..., None] * A.to(dtype).view(groups, per_group, n_state)).contiguous()
    drive = ((dt * u.to(dtype))[..., None] * B.to(dtype)[:, :, :, None]).contiguous()
    if backend == "reference":
        states = _sequential_states(decay, drive)
    else:
        states = linear_recurrence(decay, drive, chunk_size)
    y = (states * C.to(dtype)[:, :, :, None]).sum(-1)
    if D is not None:
        y = y + D.to(dtype).view(groups, per_group) * u.to(dtype)
    return y.to(u.dtype)


def _sequential_states(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    states = [drive[0]]
    for t in range(1, drive.shape[0]):
        states.append(decay[t] * states[-1] + drive[t])
    return torch.stack(states)


def linear_recurrence(a: torch.Tensor, b: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """All states of x_t = a_t * x_{t-1} + b_t (x_{-1} = 0) along the first (time) axis.

    The time axis is cut into chunks of `chunk_size`; all chunks advance together, one step per
    iteration, from a zero state. The state carried into each chunk is itself a linear recurrence
    over the chunks (factor: the chunk's product of a, input: its local end state), solved
    recursively; each local state is then corrected by (cumulative product of a) * carry. Only
    products of the given factors are formed, so decays in [0, 1] cannot overflow.
    """
    length, rest = a.shape[0], a.shape[1:]
    steps = min(chunk_size, length)
    n_chunks = -(-length // steps)
    pad = n_chunks * steps - length
    if pad:
        a = torch.cat([a, a.new_ones(pad, *rest)])
        b = torch.cat([b, b.new_zeros(pad, *rest)])
    a, b = a.view(n_chunks, steps, *rest), b.view(n_chunks, steps, *rest)
    local = [b[:, 0]]
    for t in range(1, steps):
        local.append(a[:, t] * local[-1] + b[:, t])
    if n_chunks > 1:
        a_cum = [a[:, 0]]
        for t in range(1, steps):
            a_cum.append(a[:, t] * a_cum[-1])
        carries = linear_recurrence(a_cum[-1], local[-1], chunk_size)       # state at each chunk's end
        carry_in = torch.cat([torch.zeros_like(carries[:1]), carries[:-1]])
        local = [state + decay * carry_in for state, decay in zip(local, a_cum)]
    return torch.stack(local, dim=1).view(n_chunks * steps, *rest)[:length]


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
