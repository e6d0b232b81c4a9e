"""Shared fixtures, and Triton's interpreter on machines without CUDA."""

import os

import torch

if not torch.cuda.is_available():
    # Triton decides when it is imported (diffusers imports it through torch._dynamo) whether its kernels
    # run compiled or interpreted: set before any test module loads, so that tests/attention/
    # test_triton_kernel.py checks the fused kernel on CPU tensors
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: tiny models run fastest so, and CI machines are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
