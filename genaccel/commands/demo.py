"""`genaccel demo`: dense vs proxy vs window attention on models shipped in the package, no downloads.

Two parts: speed on a 4096-token DiT built from a shipped config (random weights: attention must be
a large share of the step for sparse attention to pay off, which needs many tokens), and image
quality on the emoji DiT genaccel trained itself (32 x 32 images, a 16 x 16 token grid).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

import genaccel
from genaccel.errors import UserFacingError
from genaccel.eval.fidelity import psnr, ssim
from genaccel.bench.report import image_grid
from genaccel.eval.transformer_timer import TransformerTimer
from genaccel.pipelines.demo import load_demo_pipeline
from genaccel.pipelines.reference import load_reference_pipeline

SPEED_METHODS = {
    "dense": None,
    "window 8x8 (+alt shift)": genaccel.WindowAttentionConfig(window=(8, 8), shift="alternate"),
    "proxy 8x8": genaccel.ProxyAttentionConfig(window=(8, 8)),
    "proxy 4x4": genaccel.ProxyAttentionConfig(window=(4, 4)),
}
# the emoji model's grid is 16 x 16 tokens: 2 x 2 windows give PT-DiT's 64 proxies
QUALITY_METHODS = {
    "dense": None,
    "proxy 2x2": genaccel.ProxyAttentionConfig(window=(2, 2)),
    "proxy 4x4": genaccel.ProxyAttentionConfig(window=(4, 4)),
    "proxy 4x4, 20% dense steps": genaccel.ProxyAttentionConfig(window=(4, 4), dense_steps=5),
    "window 4x4 (+alt shift)": genaccel.WindowAttentionConfig(window=(4, 4), shift="alternate"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="dense vs sparse attention on the embedded models (no downloads)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="denoising steps of the speed part (default 4)")
    parser.add_argument("--quality-steps", type=int, default=25, help="denoising steps of the quality part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="genaccel-demo", help="folder for the image grid (default genaccel-demo)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.quality_steps < 1:
        raise UserFacingError(f"--steps and --quality-steps must be >= 1, got {args.steps} and {args.quality_steps}")
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise UserFacingError("--device cuda: this torch build or machine has no CUDA; use --device cpu")
    speed_part(args)
    quality_part(args)
    return 0


def speed_part(args: argparse.Namespace) -> None:
    print("1. Speed: a DiT built from the config shipped in genaccel (4096 image tokens per step, CFG batch 2).")
    print("   Its weights are random (seeded): this part measures time per step, not image quality.\n")
    pipe = load_demo_pipeline(args.device)
    pipe.set_progress_bar_config(disable=True)
    rows, dense_step = [], None
    for name, config in SPEED_METHODS.items():
        with _applied(pipe, config), torch.no_grad():
            pipe.transformer(**_warmup_inputs(pipe, args.device))  # warm-up outside the timing
            with TransformerTimer(pipe.transformer) as timer:
                pipe(class_labels=[207], num_inference_steps=args.steps, output_type="np",
                     generator=torch.Generator(args.device).manual_seed(args.seed))
        step = statistics.median(timer.calls)
        dense_step = dense_step or step
        rows.append((name, f"{step:.3f}", f"{dense_step / step:.2f}x"))
    _print_table(["method", "s / step", "speedup"], rows)
    print(f"   (device {args.device}, {torch.get_num_threads()} threads; median transformer time per step over "
          f"{args.steps} steps)\n")


def quality_part(args: argparse.Namespace) -> None:
    pipe = load_reference_pipeline("emoji", device=args.device)
    pipe.set_progress_bar_config(disable=True)
    classes = list(pipe.class_names)
    print("2. Quality: genaccel's emoji DiT (trained here on a CPU on the Noto Color Emoji glyphs; 32 x 32 px,")
    print(f"   16 x 16 tokens), one image per Unicode group ({', '.join(classes)}), {args.quality_steps} DDIM steps,")
    print("   the same seed for every method. It is small and under-trained: compare methods with each other,")
    print("   not with a production model.\n")
    images = {}
    for name, config in QUALITY_METHODS.items():
        with _applied(pipe, config), torch.no_grad():
            images[name] = _to_uint8(pipe(class_labels=classes, num_inference_steps=args.quality_steps,
                                          output_type="np", generator=torch.Generator(args.device).manual_seed(args.seed)).images)
    dense = images["dense"]
    rows = [(name, f"{psnr(batch, dense):.2f}", f"{ssim(batch, dense):.3f}") for name, batch in images.items()]
    _print_table(["method", "PSNR vs dense (dB)", "SSIM vs dense"], rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = image_grid(out, list(images), [list(batch) for batch in images.values()])
    print(f"\n   image grid (rows: methods, columns: classes): {grid}")


class _applied:
    """Apply a sparse-attention config for the duration of a with-block (None: stay dense)."""

    def __init__(self, pipe, config):
        self.pipe, self.config = pipe, config

    def __enter__(self):
        if self.config is not None:
            genaccel.apply(self.pipe, self.config)

    def __exit__(self, *exc):
        if self.config is not None:
            genaccel.remove(self.pipe)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255), 0, 255).astype(np.uint8)


def _print_table(headers: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in column) + 2 for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("   " + "".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def _warmup_inputs(pipe, device) -> dict:
    config = pipe.transformer.config
    size = config.sample_size
    return dict(hidden_states=torch.randn(2, config.in_channels, size, size, device=device),
                timestep=torch.tensor([999, 999], device=device), class_labels=torch.tensor([1, 1000], device=device))
