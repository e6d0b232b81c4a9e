"""`genaccel demo`: dense vs proxy vs window attention on the embedded default model, no downloads."""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import genaccel
import genaccel.errors
from genaccel.eval.transformer_timer import TransformerTimer
from genaccel.pipelines.demo import load_demo_pipeline

METHODS = {
    "dense": None,
    "window 8x8 (+alt shift)": genaccel.WindowAttentionConfig(window=(8, 8), shift="alternate"),
    "proxy 8x8": genaccel.ProxyAttentionConfig(window=(8, 8)),
    "proxy 4x4": genaccel.ProxyAttentionConfig(window=(4, 4)),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="dense vs sparse attention on the embedded demo DiT (no downloads)",
                                   description=__doc__)
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(func=run)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise genaccel.errors.UserFacingError(f"--steps must be >= 1, got {args.steps}")
    print("genaccel demo: a DiT built from the config shipped in genaccel (4096 image tokens per step, CFG batch 2).")
    print("NOTE: its weights are random (seeded) until a trained reference model ships: the images are noise,")
    print("      and the numbers below are speed and fidelity to the model's own dense output, not quality.\n")
    pipe = load_demo_pipeline(args.device)
    pipe.set_progress_bar_config(disable=True)
    rows, dense_image, dense_step = [], None, None
    for name, config in METHODS.items():
        if config is not None:
            genaccel.apply(pipe, config)
        with torch.no_grad():
            pipe.transformer(**_warmup_inputs(pipe, args.device))  # warm-up outside the timing
            with TransformerTimer(pipe.transformer) as timer:
                image = pipe(class_labels=[207], num_inference_steps=args.steps, output_type="np",
                             generator=torch.Generator(args.device).manual_seed(args.seed)).images[0]
        if config is not None:
            genaccel.remove(pipe)
        step = statistics.median(timer.calls)
        if dense_image is None:
            dense_image, dense_step = image, step
        rows.append((name, step, dense_step / step, psnr(image, dense_image)))
    print(f"{'method':<26}{'s / step':>10}{'speedup':>10}{'PSNR vs dense (dB)':>22}")
    for name, step, speedup, quality in rows:
        print(f"{name:<26}{step:>10.3f}{speedup:>9.2f}x{quality:>22.2f}")
    print(f"\n(device {args.device}; median transformer time per step over {args.steps} steps, one pipeline call each)")
    return 0


def _warmup_inputs(pipe, device) -> dict:
    config = pipe.transformer.config
    size = config.sample_size
    return dict(hidden_states=torch.randn(2, config.in_channels, size, size, device=device),
                timestep=torch.tensor([999, 999], device=device), class_labels=torch.tensor([1, 1000], device=device))
