"""torch.compile on CUDA: inductor, CUDA graphs (mode="reduce-overhead"), a patched transformer, bf16."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import genaccel
from tests.attention.test_compile import TinyPipeline
from tests.attention.tiny_models import build


@pytest.mark.parametrize("family", ["pixart", "flux", "wan"])
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_patched_transformer_matches_eager_on_cuda(family, mode):
    torch._dynamo.reset()
    model, inputs, grid = build(family)
    model = model.to("cuda", torch.bfloat16)
    inputs = {key: value.to("cuda") if torch.is_tensor(value) else value for key, value in inputs.items()}
    inputs = {key: value.to(torch.bfloat16) if torch.is_tensor(value) and value.is_floating_point()
              and key not in ("timestep", "img_ids", "txt_ids") else value for key, value in inputs.items()}
    pipe = TinyPipeline(model, inputs)
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(2, 2) if len(grid) == 2 else (1, 2, 2),
                                                       dense_steps=1))
    eager = pipe(steps=3)
    pipe.transformer = torch.compile(model, fullgraph=True, mode=mode)
    with torch._dynamo.config.patch(error_on_recompile=False):
        for _ in range(2):
            compiled = pipe(steps=3)
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got.float(), expected.float(), rtol=0, atol=5e-2)
