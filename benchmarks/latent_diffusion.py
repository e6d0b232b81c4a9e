"""A DiT on each tokenizer's latents, trained the same way: gFID / KID at several checkpoints.

HieraTok claims a diffusion model converges faster on its multi-scale latents than on its
single-scale twin's (gFID 16.4 -> 13.3). For every `--tokenizer NAME=SOURCE` (reference:multi-scale,
reference:single-scale or a tokenizer folder) this trains `genaccel train --vae SOURCE` into
OUT/NAME with one recipe (same data, seed, steps and model), unless that run already reached
`--steps`; then, at each of `--checkpoints` evenly spaced steps, samples `--fid-samples`
class-balanced images (batch b seeded seed + 1 + b for every run) and reports legacy-tf FID (±
bootstrap std; below 2,000 samples biased upward, said so) and KID against `--real` (held-out
images never trained on). Writes the "latent-diffusion" section of BENCHMARKS.md with `--write`.

    python benchmarks/latent_diffusion.py runs/latent --data data/emoji32/train --real data/emoji32/heldout \
        --tokenizer multi-scale=reference:multi-scale --tokenizer single-scale=reference:single-scale \
        --steps 4000 --checkpoints 4 --fid-samples 1000 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from reference_models import balanced_labels, fid_and_kid
from trained_models import sample_features

from genaccel.bench.markdown import git_commit, markdown_table, update_section
from genaccel.eval.intervals import frechet_sample_note
from genaccel.train.diffusion import TrainConfig, latest_checkpoint, pipeline_from_checkpoint, train

SECTION = "latent-diffusion"


def parse_tokenizer(text: str) -> tuple[str, str]:
    name, sep, source = text.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"--tokenizer takes NAME=SOURCE, got {text!r}")
    return name, source


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="runs go to OUT/NAME (reused when they already reached --steps)")
    parser.add_argument("--data", required=True, help="training images (e.g. `genaccel make-data emoji`'s train/)")
    parser.add_argument("--real", required=True, help="held-out image folder the samples are compared with")
    parser.add_argument("--tokenizer", type=parse_tokenizer, action="append", required=True, dest="tokenizers")
    parser.add_argument("--steps", type=int, default=4000, help="training steps of every run")
    parser.add_argument("--checkpoints", type=int, default=4, help="evenly spaced checkpoints measured")
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--prediction-type", default="v_prediction")
    parser.add_argument("--sample-steps", type=int, default=25, dest="steps_ddim", help="DDIM steps per sample")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--fid-samples", type=int, default=1000)
    parser.add_argument("--fid-batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", default=None, help="BENCHMARKS.md to update")
    args = parser.parse_args(argv)
    for name in ("steps", "checkpoints", "fid_samples", "fid_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.checkpoints > args.steps:
        parser.error(f"--checkpoints ({args.checkpoints}) cannot exceed --steps ({args.steps})")
    return args


def train_config(args: argparse.Namespace, name: str, source: str, image_size: int) -> TrainConfig:
    every = args.steps // args.checkpoints
    return TrainConfig(output_dir=str(Path(args.out) / name), data=args.data, image_size=image_size, vae=source,
                       width=args.width, depth=args.depth, heads=args.heads, patch_size=args.patch_size,
                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                       prediction_type=args.prediction_type, max_steps=args.steps, checkpoint_every=every,
                       sample_steps=args.steps_ddim, guidance_scale=args.guidance_scale, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from genaccel.data.image_folder import ImageFolderDataset
    from genaccel.eval.fid import InceptionExtractor

    real_set = ImageFolderDataset(args.real)
    real = torch.stack([((real_set[k][0] + 1) * 127.5).round().to(torch.uint8) for k in range(len(real_set))])
    extractor = InceptionExtractor("legacy-tf")
    real_features = extractor(real).numpy()
    started = time.perf_counter()
    rows, minutes = [], {}
    every = args.steps // args.checkpoints
    measured = [every * (k + 1) for k in range(args.checkpoints)]
    for name, source in args.tokenizers:
        config = train_config(args, name, source, real.shape[-1])
        latest = latest_checkpoint(config.output_dir)
        if latest is None or json.loads((latest / "state.json").read_text())["step"] < args.steps:
            began = time.perf_counter()
            train(config, resume="latest" if latest is not None else None)
            minutes[name] = (time.perf_counter() - began) / 60
        for step in measured:
            pipe = pipeline_from_checkpoint(Path(config.output_dir) / "checkpoints" / f"step-{step}")
            labels = balanced_labels(args.fid_samples, pipe.num_classes)
            fake = sample_features(pipe, labels, args_for_sampling(args), f"{name} step {step}", extractor)
            fid, kid_mean, kid_std = fid_and_kid(fake, real_features)
            rows.append([name, step, fid.format(2), f"{kid_mean:.4f} ± {kid_std:.4f}"])
    wall = time.perf_counter() - started
    command = "python benchmarks/latent_diffusion.py " + " ".join(sys.argv[1:] if argv is None else argv)
    trained = ", ".join(f"{name} {value:.1f} min" for name, value in minutes.items()) or "reused runs"
    body = (f"Device: CPU ({torch.get_num_threads()} threads); torch {torch.__version__}; commit {git_commit()}; "
            f"GPU: not measured. Command: `{command.strip()}` ({wall / 60:.1f} min; training: {trained}).\n\n"
            f"DiT width {args.width} depth {args.depth} heads {args.heads} patch {args.patch_size} "
            f"({args.prediction_type}, batch {args.batch_size}, lr {args.learning_rate}) trained on each tokenizer's "
            f"latents of `{args.data}` for {args.steps} steps, the same seed and data order; EMA weights at each "
            f"checkpoint; {args.fid_samples} class-balanced samples ({args.steps_ddim} DDIM steps, guidance "
            f"{args.guidance_scale}) against the {len(real)} held-out images of `{args.real}`. gFID: legacy-tf "
            "Inception, ± bootstrap std (10 resamples); KID ± subset std.\n")
    table = markdown_table(["tokenizer", "training step", f"gFID (N={args.fid_samples})", "KID"], rows)
    note = frechet_sample_note("FID", args.fid_samples, len(real))
    body += "\n" + table + (f"\n\n{note}" if note else "")
    print(body)
    if args.write:
        update_section(args.write, SECTION, body)
    return 0


def args_for_sampling(args: argparse.Namespace) -> argparse.Namespace:
    """The fields `trained_models.sample_features` reads (its --steps are DDIM steps)."""
    return argparse.Namespace(fid_batch=args.fid_batch, seed=args.seed, steps=args.steps_ddim,
                              guidance_scale=args.guidance_scale)


if __name__ == "__main__":
    raise SystemExit(main())
