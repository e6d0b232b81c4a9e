"""SS2D / SS3D: selective-scan token mixing over a 2-D image grid or a 3-D video grid (VMamba-style).

in_proj -> (x, z); x -> depthwise conv (3x3 or 3x3x3) -> SiLU -> K snake scans, each with its own
x_proj / dt_proj / A / D parameters, run as one batched selective scan; the K outputs are put back
in raster order and summed -> LayerNorm -> * SiLU(z) -> out_proj. In 2-D the default K = 4 paths
are rows (forward, backward) and columns (forward, backward); in 3-D frames are the outer axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .scan_paths import DEFAULT_AXIS_ORDERS, scan_paths
from .selective_scan import BACKENDS, selective_scan_time_major


class SS2D(nn.Module):
    """Four-direction snake selective scan over tokens (B, N, dim) laid out on a `grid` of N cells."""

    spatial_dims = 2

    def __init__(self, dim: int, d_state: int = 1, expand: float = 2.0, dt_rank: int | None = None,
                 conv_kernel: int = 3, axis_orders: tuple[tuple[int, ...], ...] | None = None,
                 scan_backend: str = "auto", chunk_size: int = 32,
                 dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        if scan_backend not in BACKENDS:
            raise ValueError(f"unknown scan_backend {scan_backend!r}; accepted: {', '.join(BACKENDS)}")
        self.axis_orders = tuple(tuple(o) for o in (axis_orders or DEFAULT_AXIS_ORDERS[self.spatial_dims]))
        if any(len(o) != self.spatial_dims for o in self.axis_orders):
            raise ValueError(f"each axis order needs {self.spatial_dims} axes, got {self.axis_orders}")
        self.d_inner = int(expand * dim)
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.num_paths = 2 * len(self.axis_orders)
        self.scan_backend, self.chunk_size = scan_backend, chunk_size
        k, d, r, n = self.num_paths, self.d_inner, self.dt_rank, d_state

        self.in_proj = nn.Linear(dim, 2 * d, bias=False)
        conv = nn.Conv2d if self.spatial_dims == 2 else nn.Conv3d
        self.conv = conv(d, d, conv_kernel, padding=conv_kernel // 2, groups=d)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d))
        self.dt_proj_weight = nn.Parameter(torch.empty(k, d, r))
        self.dt_proj_bias = nn.Parameter(torch.empty(k, d))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(k, d, 1))
        self.D = nn.Parameter(torch.ones(k, d))
        self.out_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, dim, bias=False)
        self._reset_scan_parameters(dt_min, dt_max)
        self._path_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _reset_scan_parameters(self, dt_min: float, dt_max: float) -> None:
        """Mamba's init: dt log-uniform in [dt_min, dt_max] through an inverse-softplus bias."""
        nn.init.uniform_(self.x_proj_weight, -self.d_inner ** -0.5, self.d_inner ** -0.5)
        nn.init.uniform_(self.dt_proj_weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        with torch.no_grad():
            dt = torch.exp(torch.rand_like(self.dt_proj_bias) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=1e-4)
            self.dt_proj_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def paths(self, grid: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(paths, inverses) for `grid` on `device`, built once per grid size and device."""
        key = (grid, str(device))
        if key not in self._path_cache:
            paths, inverses = scan_paths(grid, self.axis_orders)
            self._path_cache[key] = (paths.to(device), inverses.to(device))
        return self._path_cache[key]

    def forward(self, hidden_states: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        grid = tuple(int(g) for g in grid)
        batch, length, _ = hidden_states.shape
        if len(grid) != self.spatial_dims or math.prod(grid) != length:
            raise ValueError(f"{type(self).__name__} needs a {self.spatial_dims}-D grid whose product is the "
                             f"token count {length}, got grid {grid}")
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = x.unflatten(1, grid).movedim(-1, 1)                               # (B, d, *grid), channels last
        x = F.silu(self.conv(x)).movedim(1, -1).reshape(batch, length, self.d_inner)
        paths, inverses = self.paths(grid, x.device)
        k, d = self.num_paths, self.d_inner
        # time-major path order (L, B, K, d): position l of every path, gathered as rows of d channels
        xs = x.transpose(0, 1).index_select(0, paths.t().reshape(-1)).view(length, k, batch, d).transpose(1, 2)
        proj = torch.einsum("lbkd,kcd->lbkc", xs, self.x_proj_weight)
        dts, Bs, Cs = proj.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dts = torch.einsum("lbkr,kdr->lbkd", dts, self.dt_proj_weight)
        y = selective_scan_time_major(
            xs, dts, -torch.exp(self.A_log.float()).reshape(k * d, self.d_state), Bs, Cs, self.D.reshape(k * d),
            delta_bias=self.dt_proj_bias.reshape(k * d), delta_softplus=True,
            backend=self.scan_backend, chunk_size=self.chunk_size,
        )
        y = sum(y[:, :, i].index_select(0, inverses[i]) for i in range(k)).transpose(0, 1)  # (B, L, d) raster
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)


class SS3D(SS2D):
    """SS2D over a (frames, height, width) video grid: 3x3x3 depthwise conv, frame-outer snake scans."""

    spatial_dims = 3
