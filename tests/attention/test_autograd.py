"""Training through sparse attention: `auto` picks a differentiable backend, inference-only ones refuse."""

from __future__ import annotations

import pytest
import torch

from genaccel.attention import proxy_attention, window_attention
from genaccel.attention.backends import resolve_backend


def leaves(n=35, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 2, n, 8, generator=generator, dtype=torch.float64).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("op", [window_attention, proxy_attention])
@pytest.mark.parametrize("shift", [False, True])
def test_auto_gradients_equal_the_reference_gradients(op, shift):
    grid, window = (7, 5), (3, 2)  # padded windows
    text = [t.detach()[:, :, :4].clone().requires_grad_() for t in leaves(seed=1)[:2]]
    weights = torch.randn(1, 2, 35, 8, dtype=torch.float64)
    grads = []
    for backend in ("reference", "auto"):
        q, k, v = leaves()
        prefix = [t.detach().clone().requires_grad_() for t in text]
        out = op(q, k, v, grid, window, shift, backend=backend, prefix_kv=tuple(prefix))
        grads.append(torch.autograd.grad((out * weights).sum(), (q, k, v, *prefix)))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_inference_backends_refuse_autograd():
    q, k, v = leaves()
    with pytest.raises(RuntimeError, match="for inference"):
        proxy_attention(q, k, v, (7, 5), (3, 2), backend="split")
    with torch.no_grad():  # no graph recorded: fine
        proxy_attention(q, k, v, (7, 5), (3, 2), backend="split")


def test_auto_choice_per_device_and_mode():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "split"
    assert resolve_backend("auto", cpu, needs_grad=True) == "concat"
    assert resolve_backend("auto", cuda, needs_grad=True) == "flex"
    assert resolve_backend("auto", cuda) in ("triton", "split")
    with pytest.raises(RuntimeError, match="no backward on CPU"):
        resolve_backend("flex", cpu, needs_grad=True)
