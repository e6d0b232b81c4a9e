"""Snake scan paths (permutation, adjacency, cache) and SS2D / SS3D against a per-path loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from genaccel.blocks.scan_paths import DEFAULT_AXIS_ORDERS, scan_paths, snake_path
from genaccel.blocks.selective_scan import selective_scan
from genaccel.blocks.ss2d import SS2D, SS3D

GRIDS = [(1, 1), (1, 6), (6, 1), (4, 4), (5, 7), (2, 3, 4), (3, 3, 3), (1, 5, 2)]


def _coords(index: torch.Tensor, grid) -> torch.Tensor:
    return torch.stack(torch.unravel_index(index, grid), dim=-1)


@pytest.mark.parametrize("grid", GRIDS)
def test_every_path_visits_every_token_once_and_steps_to_a_neighbour(grid):
    paths, inverses = scan_paths(grid, DEFAULT_AXIS_ORDERS[len(grid)])
    n = math.prod(grid)
    assert paths.shape == (4, n)
    for path, inverse in zip(paths, inverses):
        assert torch.equal(torch.sort(path).values, torch.arange(n))       # a permutation
        assert torch.equal(path[inverse], torch.arange(n))                 # inverse puts it back
        steps = (_coords(path, grid)[1:] - _coords(path, grid)[:-1]).abs().sum(-1)
        assert torch.all(steps == 1)                                       # grid neighbours


def test_snake_paths_golden_3x4():
    assert snake_path((3, 4), (0, 1)).tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert snake_path((3, 4), (1, 0)).tolist() == [0, 4, 8, 9, 5, 1, 2, 6, 10, 11, 7, 3]
    paths, _ = scan_paths((3, 4), ((0, 1), (1, 0)))
    assert paths[1].tolist() == [11, 10, 9, 8, 4, 5, 6, 7, 3, 2, 1, 0]  # rows, backwards


def test_paths_are_cached_per_grid_and_axis_orders_are_checked():
    assert scan_paths((5, 6), ((0, 1), (1, 0)))[0] is scan_paths((5, 6), ((0, 1), (1, 0)))[0]
    with pytest.raises(ValueError, match="permutation"):
        snake_path((3, 4), (0, 0))
    with pytest.raises(ValueError, match="each axis order needs 2 axes"):
        SS2D(8, axis_orders=((0, 1, 2),))


def _per_path_loop(module: SS2D, x: torch.Tensor, grid) -> torch.Tensor:
    """SS2D written one path at a time with explicit index loops: the oracle for the batched module."""
    batch, length, _ = x.shape
    xi, z = module.in_proj(x).chunk(2, dim=-1)
    xi = F.silu(module.conv(xi.transpose(1, 2).reshape(batch, module.d_inner, *grid))).flatten(2)
    paths, _ = scan_paths(grid, module.axis_orders)
    total = torch.zeros(batch, module.d_inner, length, dtype=x.dtype)
    for k, path in enumerate(paths):
        seq = torch.stack([xi[:, :, int(i)] for i in path], dim=-1)
        proj = torch.einsum("bdl,cd->bcl", seq, module.x_proj_weight[k])
        dt, B, C = proj.split([module.dt_rank, module.d_state, module.d_state], dim=1)
        y = selective_scan(seq, torch.einsum("brl,dr->bdl", dt, module.dt_proj_weight[k]),
                           -torch.exp(module.A_log[k]), B, C, module.D[k], delta_bias=module.dt_proj_bias[k],
                           delta_softplus=True, backend="reference")
        for position, token in enumerate(path.tolist()):
            total[:, :, token] += y[:, :, position]
    y = module.out_norm(total.transpose(1, 2)) * F.silu(z)
    return module.out_proj(y)


@pytest.mark.parametrize("cls, grid", [(SS2D, (5, 7)), (SS2D, (4, 4)), (SS3D, (2, 3, 4))])
def test_ss_module_matches_per_path_loop_float64(cls, grid):
    torch.manual_seed(0)
    module = cls(8, d_state=2).double()
    x = torch.randn(2, math.prod(grid), 8, dtype=torch.float64)
    assert torch.allclose(module(x, grid), _per_path_loop(module, x, grid), rtol=1e-10, atol=1e-12)


def test_ss2d_paths_have_separate_parameters_and_gradients_reach_them():
    torch.manual_seed(0)
    module = SS2D(8)
    assert module.x_proj_weight.shape[0] == module.dt_proj_weight.shape[0] == module.A_log.shape[0] == 4
    module(torch.randn(1, 20, 8), (4, 5)).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # each path's parameters get a different gradient: the four scans are distinct
    g = module.x_proj_weight.grad
    assert all(not torch.allclose(g[i], g[j]) for i in range(4) for j in range(i + 1, 4))


def test_ss2d_rejects_a_grid_that_does_not_match():
    with pytest.raises(ValueError, match="2-D grid whose product is the token count 12"):
        SS2D(8)(torch.randn(1, 12, 8), (5, 3))
    with pytest.raises(ValueError, match="3-D grid"):
        SS3D(8)(torch.randn(1, 12, 8), (3, 4))


def test_mamba_ssm_layout_conversion_with_a_stand_in_kernel(monkeypatch):
    """The CUDA path's (batch, dim, L) conversions, checked on CPU with the reference as the kernel."""
    import sys
    import types

    scan_module = sys.modules["genaccel.blocks.selective_scan"]  # the package re-exports a function of that name

    kernel = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    kernel.selective_scan_fn = lambda u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False: (
        selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend="reference"))
    monkeypatch.setitem(sys.modules, "mamba_ssm", types.ModuleType("mamba_ssm"))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops", types.ModuleType("mamba_ssm.ops"))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops.selective_scan_interface", kernel)
    real_resolve = scan_module.resolve_backend
    monkeypatch.setattr(scan_module, "resolve_backend",
                        lambda backend, device: "mamba_ssm" if backend == "mamba_ssm" else real_resolve(backend, device))
    torch.manual_seed(0)
    chunked = SS2D(8, d_state=2, scan_backend="chunked").double()
    kernel_path = SS2D(8, d_state=2, scan_backend="mamba_ssm").double()
    kernel_path.load_state_dict(chunked.state_dict())
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    assert torch.allclose(kernel_path(x, (4, 5)), chunked(x, (4, 5)), rtol=1e-10, atol=1e-12)
