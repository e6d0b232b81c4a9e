"""Every selective-scan path against the sequential reference, plus backend selection errors."""

import pytest
import torch

from genaccel.blocks.selective_scan import linear_recurrence, mamba_ssm_available, selective_scan


def _inputs(batch=2, dim=6, state=4, length=53, groups=None, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device)  # noqa: E731
    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)
    return dict(u=rand(batch, dim, length), delta=rand(batch, dim, length),
                A=-torch.rand(dim, state, generator=g, dtype=dtype).to(device) * 4, B=rand(*bc_shape),
                C=rand(*bc_shape), D=rand(dim), z=rand(batch, dim, length), delta_bias=rand(dim))


def test_reference_matches_hand_computed_recurrence():
    # one channel, one state, no softplus: x_t = exp(dt*A) x_{t-1} + dt*B*u, y = C*x + D*u
    u = torch.tensor([[[1.0, 2.0, -1.0]]], dtype=torch.float64)
    dt = torch.tensor([[[0.5, 1.0, 2.0]]], dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.tensor([[[1.0, 0.5, 2.0]]], dtype=torch.float64)
    C = torch.tensor([[[2.0, 1.0, -1.0]]], dtype=torch.float64)
    D = torch.tensor([0.25], dtype=torch.float64)
    x, expected = 0.0, []
    for t in range(3):
        x = torch.exp(dt[0, 0, t] * A[0, 0]).item() * x + dt[0, 0, t].item() * B[0, 0, t].item() * u[0, 0, t].item()
        expected.append(C[0, 0, t].item() * x + 0.25 * u[0, 0, t].item())
    y = selective_scan(u, dt, A, B, C, D, backend="reference")
    assert torch.allclose(y[0, 0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("chunk_size", [2, 3, 8, 32, 64])
@pytest.mark.parametrize("groups", [None, 1, 2])
def test_chunked_matches_reference_float64(chunk_size, groups):
    kw = _inputs(groups=groups)
    ref = selective_scan(**kw, delta_softplus=True, backend="reference")
    out = selective_scan(**kw, delta_softplus=True, backend="chunked", chunk_size=chunk_size)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_chunked_matches_reference_without_optional_terms_float32():
    kw = _inputs(dtype=torch.float32, length=300)
    for key in ("D", "z", "delta_bias"):
        kw[key] = None
    kw["delta"] = kw["delta"].abs()
    ref = selective_scan(**kw, backend="reference")
    out = selective_scan(**kw, backend="chunked")
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_chunked_gradients_match_reference():
    kw = {k: v.requires_grad_() for k, v in _inputs(length=20).items()}
    grads = []
    for backend in ("reference", "chunked"):
        out = selective_scan(**kw, delta_softplus=True, backend=backend, chunk_size=4)
        grads.append(torch.autograd.grad(out.square().sum(), list(kw.values())))
    for ref, ours in zip(*grads):
        assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_linear_recurrence_long_sequence_recursion():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1000, 3, generator=g, dtype=torch.float64), torch.randn(1000, 3, generator=g, dtype=torch.float64)
    state, expected = torch.zeros(3, dtype=torch.float64), []
    for t in range(1000):
        state = a[t] * state + b[t]
        expected.append(state)
    out = linear_recurrence(a, b, chunk_size=4)  # three levels of chunk carries
    assert torch.allclose(out, torch.stack(expected), rtol=1e-12, atol=1e-12)


def test_auto_on_cpu_is_chunked_and_bitwise_equal():
    kw = _inputs()
    assert torch.equal(selective_scan(**kw, backend="auto"), selective_scan(**kw, backend="chunked"))


def test_unknown_backend_and_bad_shapes_raise():
    kw = _inputs()
    with pytest.raises(ValueError, match="unknown selective-scan backend 'fast'.*reference, chunked"):
        selective_scan(**kw, backend="fast")
    with pytest.raises(ValueError, match="A must have shape"):
        selective_scan(**{**kw, "A": kw["A"][:3]}, backend="chunked")
    with pytest.raises(ValueError, match="G dividing dim"):
        selective_scan(**{**kw, "B": kw["B"][:, None].expand(-1, 4, -1, -1)}, backend="chunked")
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(**kw, backend="chunked", chunk_size=1)


@pytest.mark.skipif(mamba_ssm_available(), reason="mamba-ssm is installed")
def test_mamba_ssm_backend_requested_without_package_raises():
    with pytest.raises(RuntimeError, match="mamba-ssm package is not installed"):
        selective_scan(**_inputs(), backend="mamba_ssm")


@pytest.mark.skipif(not (mamba_ssm_available() and torch.cuda.is_available()), reason="needs mamba-ssm and CUDA")
def test_mamba_ssm_matches_reference():
    kw = _inputs(dtype=torch.float32, groups=2, device="cuda", length=200)
    ref = selective_scan(**kw, delta_softplus=True, backend="reference")
    out = selective_scan(**kw, delta_softplus=True, backend="mamba_ssm")
    assert torch.allclose(out, ref, rtol=1e-3, atol=1e-3)
