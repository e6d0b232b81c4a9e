"""Benchmark the linear-time blocks against dense, window and linear attention on CPU.

Forward time (median of `--runs` after warm-up, `genaccel.eval.timing.time_callable`) and analytic
FLOPs of one token mixer / block at 1k, 4k, 16k and 64k tokens (square grids, batch 1, float32,
width C=128, 4 heads of 32, window 8x8), all in one process; then training steps/s of a small
LaMamba-DiT. Writes BENCHMARKS.md section "blocks".

FLOPs (multiply-add = 2; N tokens, C width, H heads of d = C/H, W = tokens per window,
E = ssm_expand * C, S = state size, R = dt rank, K = 4 scan paths, k = conv kernel):
  dense attention     8NC^2 (q, k, v, out) + 4N^2 C (QK^T and AV)
  window attention    8NC^2 + 4NWC
  Sana linear attn    8NC^2 + 4N(d+1)C (relu(K)^T [V, 1] and relu(Q) times it, per head)
  SS2D mixer          4NCE (in_proj) + 2NEk^2 (depthwise conv) + 2KNE(R+2S) (x_proj)
                      + 2KNRE (dt_proj) + KNE(7S+4) (scan: exp, softplus, update, C-contraction, D skip;
                      exp / softplus as one FLOP each) + KNE (sum of paths) + 10NE (norm, gate) + 2NEC
  LaMamba block       SS2D + window attention + NWH (bias) + 16NC^2 (MLP, ratio 4) + 30NC (norms,
                      modulations, gates) + 18 C_cond C (adaLN linear)

Usage: python benchmarks/blocks.py [--tokens 1024 4096 16384 65536] [--runs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, SanaLinearAttnProcessor2_0
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genaccel.attention import window_attention  # noqa: E402
from genaccel.blocks import SS2D, LaMambaBlock  # noqa: E402
from genaccel.blocks.attention_layers import MultiHeadAttention  # noqa: E402
from genaccel.bench.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402
from genaccel.models import LaMambaDiTModel  # noqa: E402

WIDTH, HEADS, WINDOW, COND = 128, 4, 8, 128
SS2D_KW = dict(d_state=1, expand=2.0)


def dense_flops(n: int, c: int = WIDTH) -> float:
    return 8 * n * c * c + 4 * n * n * c


def window_flops(n: int, c: int = WIDTH, w: int = WINDOW * WINDOW) -> float:
    return 8 * n * c * c + 4 * n * min(w, n) * c


def sana_flops(n: int, c: int = WIDTH, h: int = HEADS) -> float:
    return 8 * n * c * c + 4 * n * (c // h + 1) * c


def ss2d_flops(n: int, c: int = WIDTH, d_state: int = 1, expand: float = 2.0, k: int = 4, kernel: int = 3) -> float:
    e, r = int(expand * c), math.ceil(c / 16)
    return (4 * n * c * e + 2 * n * e * kernel ** 2 + 2 * k * n * e * (r + 2 * d_state) + 2 * k * n * r * e
            + k * n * e * (7 * d_state + 4) + k * n * e + 10 * n * e + 2 * n * e * c)


def lamamba_block_flops(n: int, c: int = WIDTH, w: int = WINDOW * WINDOW, h: int = HEADS) -> float:
    return (ss2d_flops(n, c, **SS2D_KW) + window_flops(n, c, w) + n * min(w, n) * h + 16 * n * c * c
            + 30 * n * c + 18 * COND * c)


def build_ops(side: int) -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (forward call, analytic FLOPs) at a side x side grid."""
    torch.manual_seed(0)
    n, grid = side * side, (side, side)
    x = torch.randn(1, n, WIDTH)
    mha = MultiHeadAttention(WIDTH, HEADS).eval()
    sana = Attention(query_dim=WIDTH, heads=HEADS, dim_head=WIDTH // HEADS, bias=True,
                     processor=SanaLinearAttnProcessor2_0()).eval()
    ss2d = SS2D(WIDTH, **SS2D_KW).eval()
    block = LaMambaBlock(WIDTH, HEADS, COND, window=WINDOW, d_state=SS2D_KW["d_state"],
                         ssm_expand=SS2D_KW["expand"]).eval()
    with torch.no_grad():
        block.adaln[1].weight.normal_(0, 0.02)  # non-zero gates: every branch does its work
    cond = torch.randn(1, COND)

    def windowed() -> torch.Tensor:
        q, k, v = mha.project(x)
        return mha.output(window_attention(q, k, v, grid, WINDOW, backend="auto"))

    return {
        "dense attention (SDPA)": (lambda: mha(x), dense_flops(n)),
        f"window attention {WINDOW}x{WINDOW} (genaccel, backend auto)": (windowed, window_flops(n)),
        "Sana linear attention (diffusers SanaLinearAttnProcessor2_0)": (lambda: sana(x), sana_flops(n)),
        "SS2D mixer (4 snake scans, state 1, chunked scan)": (lambda: ss2d(x, grid), ss2d_flops(n)),
        "LaMamba block (SS2D + window attn + MLP)": (lambda: block(x, cond, grid), lamamba_block_flops(n)),
    }


def training_steps_per_second(runs: int) -> tuple[float, int, str]:
    torch.manual_seed(0)
    config = dict(sample_size=16, block_out_channels=(64, 128), layers_per_stage=(2, 2), attention_head_dim=32,
                  window_size=8, num_embeds_ada_norm=10)
    model = LaMambaDiTModel(**config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    latents, labels = torch.randn(8, 4, 16, 16), torch.randint(0, 10, (8,))

    def step() -> None:
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (8,))
        loss = F.mse_loss(model(latents + noise, t, labels).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = time_callable(step, warmup=2, runs=runs)
    params = sum(p.numel() for p in model.parameters())
    desc = f"LaMamba-DiT {config['block_out_channels']} x {config['layers_per_stage']} blocks, 16x16x4 latents, batch 8, AdamW"
    return 1.0 / timing.median_s, params, desc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-dense-tokens", type=int, default=16384,
                        help="skip dense attention above this many tokens (quadratic time and memory)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for n in tqdm(args.tokens, desc="token counts"):
        side = math.isqrt(n)
        if side * side != n:
            raise SystemExit(f"--tokens must be perfect squares (square grids), got {n}")
        for name, (fn, flops) in build_ops(side).items():
            if name.startswith("dense") and n > args.max_dense_tokens:
                rows.append([name, n, f"{side}x{side}", "not run (quadratic; above --max-dense-tokens)",
                             f"{flops / 1e9:.2f}", "-"])
                continue
            with torch.no_grad():
                timing = time_callable(fn, warmup=1, runs=args.runs)
            rows.append([name, n, f"{side}x{side}", f"{timing.median_ms:.1f}", f"{flops / 1e9:.2f}",
                         f"{flops / timing.median_s / 1e9:.1f}"])
    steps, params, desc = training_steps_per_second(args.runs)
    command = "python benchmarks/blocks.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"Device: CPU ({platform.processor() or platform.machine()}), {args.threads} thread(s), float32, batch 1, "
        f"width {WIDTH}, {HEADS} heads, window {WINDOW}x{WINDOW}. GPU: not measured. The CPU is shared: "
        f"1-min load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run "
        f"({os.cpu_count()} cores), so absolute times are inflated; rows were measured back to back.",
        f"Commit: `{git_commit()}`. Command: `{command.strip()}`. Median of {args.runs} runs after warm-up; "
        "FLOPs are analytic (formulas in `benchmarks/blocks.py` and docs/models.md).",
        "",
        markdown_table(["op (forward)", "tokens", "grid", "median ms", "GFLOPs", "GFLOP/s"], rows),
        "",
        f"Training: {desc}, {params / 1e6:.2f} M parameters: **{steps:.2f} steps/s** (median of {args.runs} steps).",
    ])
    update_section(args.output, "blocks", body)
    print(body)


if __name__ == "__main__":
    main()
