"""Sparse attention under diffusers' Ulysses context parallelism equals the single-process sparse output.

Two CPU processes with the gloo backend (its all-to-all works on CPU) run a tiny Wan and a tiny Flux
with `enable_parallelism(ContextParallelConfig(ulysses_degree=2))`; rank 0 saves its output.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import genaccel
from tests.attention.tiny_models import build, run

WORLD = 2


def patched_model(family: str):
    if family == "wan":
        model, inputs, _ = build("wan", frames=2, height=8, width=8)  # 32 tokens, 2 heads: 16 per rank
        # diffusers 0.36 also shards the text across ranks (later releases do not): an even length
        inputs["encoder_hidden_states"] = torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(3))
        config = genaccel.ProxyAttentionConfig(window=(1, 2, 2), shift="alternate")
    else:
        model, inputs, _ = build("flux", height=4, width=6)  # 24 image + 8 text tokens
        inputs["encoder_hidden_states"] = torch.randn(2, 8, 12, generator=torch.Generator().manual_seed(3))
        inputs["txt_ids"] = torch.zeros(8, 3)
        config = genaccel.ProxyAttentionConfig(window=(2, 2), shift="alternate")
    genaccel.apply(model, config)
    return model, inputs


def _rank(rank: int, family: str, store: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        torch.accelerator.device_count = lambda: 1  # diffusers picks `rank % device_count()`; the CPU counts 0
        from diffusers import ContextParallelConfig

        model, inputs = patched_model(family)
        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=WORLD))
        out = run(model, inputs)
        if rank == 0:
            torch.save(out, out_path)
        # Both ranks leave together: a rank that tears gloo down while its peer still holds the
        # connection can make the peer's gloo thread abort (SIGABRT), seen once on 2 shared cores.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("family", ["wan", "flux"])
def test_ulysses_two_processes_equal_one_process(family, tmp_path):
    pytest.importorskip("diffusers", minversion="0.36")
    out_path = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(family, str(tmp_path / "store"), str(out_path)), nprocs=WORLD)
    model, inputs = patched_model(family)
    torch.testing.assert_close(torch.load(out_path, weights_only=True), run(model, inputs), rtol=1e-5, atol=1e-5)


def test_ring_attention_and_tensor_parallelism_are_refused():
    model, _, _ = build("wan")
    model._parallel_config = SimpleNamespace(context_parallel_config=SimpleNamespace(ring_degree=2),
                                             tensor_parallel_config=None)
    with pytest.raises(NotImplementedError, match="ring attention"):
        genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(1, 2, 2)))
    model._parallel_config = SimpleNamespace(context_parallel_config=None, tensor_parallel_config=object())
    with pytest.raises(NotImplementedError, match="tensor parallelism"):
        genaccel.apply(model, genaccel.ProxyAttentionConfig(window=(1, 2, 2)))
