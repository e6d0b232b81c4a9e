"""Dense DiT vs PT-DiT vs LaMamba-DiT trained the same way: size, FLOPs, sampling time and FID.

Each `--run NAME=DIR` is a `genaccel train` output folder; the checkpoint at `--step` (the same step
for every run, so every model saw the same images) is loaded with its EMA weights. For each model
the script reports parameters, forward FLOPs per image (torch's FlopCounterMode), the wall-clock
time of one pipeline call (all models timed in the same process), the training loss over the last
500 steps, and legacy-tf FID and KID of `--fid-samples` class-balanced samples against as many
held-out real shapes. The first run is the baseline the others are compared with. Writes the
"trained-models" section of BENCHMARKS.md and docs/trained_models_samples.png.

FID samples take long on a CPU; `--only NAME` computes one model's Inception features into
`--cache` (so models can be sampled in separate processes) and the final call without `--only`
reuses every cached feature set whose settings match.

    python benchmarks/trained_models.py --run dit=runs/dit --run ptdit=runs/ptdit \
        --run lamamba=runs/lamamba --step 3000 --fid-samples 1000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from reference_models import REPO, balanced_labels, fid_and_kid, heldout_real_images, require_positive

from genaccel.eval.fid import InceptionExtractor
from genaccel.bench.markdown import git_commit, markdown_table, update_section
from genaccel.eval.timing import time_callable
from genaccel.pipelines.class_conditional import image_grid
from genaccel.train.diffusion import pipeline_from_checkpoint

LOSS_WINDOW = 500  # training steps whose logged losses are averaged for the final training loss


def parse_run(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--run takes NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def checkpoint_of(folder: Path, step: int) -> Path:
    checkpoint = folder / "checkpoints" / f"step-{step}"
    if not (checkpoint / "state.json").exists():
        found = sorted(p.name for p in (folder / "checkpoints").glob("step-*")) if folder.exists() else []
        raise SystemExit(f"no checkpoint {checkpoint} (found: {', '.join(found) or 'none'}); "
                         "give a --step every run reached")
    return checkpoint


def describe(config: dict) -> str:
    window = f", window {config['window_size']}" if config.get("window_size") else ""
    return f"{config['arch']} width {config['width']} depth {config['depth']} heads {config['heads']}{window}"


def final_loss(folder: Path, step: int) -> float:
    """Mean of the losses logged in the LOSS_WINDOW training steps up to `step` (batch losses are noisy)."""
    entries = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [e["loss"] for e in entries if step - LOSS_WINDOW < e["step"] <= step]
    if not losses:
        raise SystemExit(f"{folder / 'log.jsonl'} logs no loss in steps {step - LOSS_WINDOW + 1}..{step}")
    return float(np.mean(losses))


def forward_gflops(transformer: torch.nn.Module, size: int) -> float:
    """Forward FLOPs (GFLOP) of one image, one class label, one timestep."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        transformer(torch.zeros(1, 3, size, size), torch.tensor([500]), class_labels=torch.tensor([0]))
    return counter.get_total_flops() / 1e9


def sample_features(pipe, labels: list[int], args, name: str, extractor: InceptionExtractor) -> np.ndarray:
    """Inception features (N, 2048) of the FID samples; batch b is seeded seed + 1 + b for every model."""
    features = []
    starts = range(0, len(labels), args.fid_batch)
    for b, start in enumerate(tqdm(starts, desc=f"FID samples, {name}", unit="batch")):
        generator = torch.Generator().manual_seed(args.seed + 1 + b)
        images = pipe(labels[start:start + args.fid_batch], num_inference_steps=args.steps,
                      generator=generator, guidance_scale=args.guidance_scale, output_type="pt").images
        features.append(extractor(images).numpy())
    return np.concatenate(features)


def cached(path: Path, settings: dict, compute) -> np.ndarray:
    """Features from `path` if it was written with the same settings, else computed and written."""
    if path.exists():
        data = np.load(path)
        if json.loads(str(data["settings"])) == settings:
            return data["features"]
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, features=features, settings=json.dumps(settings, sort_keys=True))
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True,
                        help="NAME=FOLDER of a genaccel train run (repeat; the first is the baseline)")
    parser.add_argument("--step", type=int, required=True, help="checkpoint step compared (the same for every run)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--fid-samples", type=int, default=1000)
    parser.add_argument("--fid-batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5, help="timed pipeline calls per model (median reported)")
    parser.add_argument("--time-images", type=int, default=8)
    parser.add_argument("--time-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="compute this run's FID statistics into --cache and stop")
    parser.add_argument("--cache", default=str(REPO / ".cache" / "trained_models"))
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    if args.fid_samples < 2:
        parser.error(f"--fid-samples must be >= 2 (a covariance needs two samples), got {args.fid_samples}")
    require_positive(parser, args, ["step", "steps", "fid_batch", "runs", "time_images", "time_steps", "threads"])
    runs = dict(args.run)
    if len(runs) != len(args.run):
        parser.error(f"--run names must differ, got {[name for name, _ in args.run]}")
    if args.only is not None:
        if args.only not in runs:
            parser.error(f"--only {args.only!r} is not one of the runs: {', '.join(runs)}")
        runs = {args.only: runs[args.only]}  # the other runs may still be training
    torch.set_num_threads(args.threads)

    checkpoints = {name: checkpoint_of(folder, args.step) for name, folder in runs.items()}
    states = {name: json.loads((ckpt / "state.json").read_text()) for name, ckpt in checkpoints.items()}
    data_keys = {(s["config"]["num_images"], s["config"]["image_size"], s["config"]["data_seed"], s["config"]["data"])
                 for s in states.values()}
    if len(data_keys) != 1:
        raise SystemExit(f"the runs were trained on different data (num_images, image_size, data_seed, data): {data_keys}")
    num_images, size, data_seed, _ = data_keys.pop()
    num_classes = len(next(iter(states.values()))["classes"])
    labels = balanced_labels(args.fid_samples, num_classes)
    sampling = dict(samples=args.fid_samples, batch=args.fid_batch, steps=args.steps,
                    guidance=args.guidance_scale, seed=args.seed)
    extractor = InceptionExtractor("legacy-tf")
    cache = Path(args.cache)

    def model_features(name: str, pipe) -> np.ndarray:
        settings = {**sampling, "checkpoint": str(checkpoints[name].resolve())}
        return cached(cache / f"{name}.npz", settings, lambda: sample_features(pipe, labels, args, name, extractor))

    if args.only is not None:
        pipe = pipeline_from_checkpoint(checkpoints[args.only])
        pipe.set_progress_bar_config(disable=True)
        model_features(args.only, pipe)
        print(f"{args.only}: Inception features in {cache / (args.only + '.npz')}")
        return

    load_before = os.getloadavg()[0]
    real_settings = dict(samples=args.fid_samples, num_images=num_images, size=size, data_seed=data_seed)
    real = cached(cache / "real.npz", real_settings, lambda: extractor(
        heldout_real_images(args.fid_samples, num_classes, num_images, size, data_seed)).numpy())
    timed_labels = balanced_labels(args.time_images, num_classes)
    rows, grids, results = [], [], {}
    for name, checkpoint in checkpoints.items():
        pipe = pipeline_from_checkpoint(checkpoint)
        pipe.set_progress_bar_config(disable=True)
        config = states[name]["config"]
        transformer = pipe.transformer
        params = sum(p.numel() for p in transformer.parameters()) / 1e6
        gflops = forward_gflops(transformer, size)
        call = lambda: pipe(timed_labels, num_inference_steps=args.time_steps,  # noqa: E731
                            generator=torch.Generator().manual_seed(args.seed),
                            guidance_scale=args.guidance_scale, output_type="pt")
        seconds = time_callable(call, warmup=1, runs=args.runs).median_s
        fid, kid, kid_std = fid_and_kid(model_features(name, pipe), real)
        grid_images = pipe(list(range(num_classes)), num_inference_steps=args.steps,
                           generator=torch.Generator().manual_seed(args.seed),
                           guidance_scale=args.guidance_scale, output_type="pil").images
        grids.extend(grid_images)
        results[name] = dict(params=params, gflops=gflops, seconds=seconds, fid=fid.value)
        rows.append([name, describe(config), f"{params:.2f}", f"{gflops:.3f}", f"{seconds:.3f}",
                     f"{final_loss(runs[name], args.step):.4f}", fid.format(2), f"{kid:.4f} ± {kid_std:.4f}"])
        print(f"{name}: {params:.2f}M params, {gflops:.3f} GFLOP, {seconds:.3f} s/call, FID {fid.format(2)}, "
              f"KID {kid:.4f}", flush=True)

    baseline = next(iter(results))
    base = results[baseline]
    for row, name in zip(rows, results):
        r = results[name]
        row[4:5] = [row[4], f"{base['seconds'] / r['seconds']:.2f}x"]
        row.append("baseline" if name == baseline else
                   f"{r['fid'] / base['fid']:.3f} at {r['gflops'] / base['gflops']:.2f}x FLOPs")

    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    grid = image_grid(grids, columns=num_classes)
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(docs / "trained_models_samples.png")
    command = ("python benchmarks/trained_models.py " + " ".join(f"--run {n}=RUNS/{n}" for n in runs)
               + f" --step {args.step} --steps {args.steps} --guidance-scale {args.guidance_scale} "
               f"--fid-samples {args.fid_samples} --fid-batch {args.fid_batch} --runs {args.runs} "
               f"--time-images {args.time_images} --time-steps {args.time_steps} --threads {args.threads} "
               f"--seed {args.seed}")
    n = args.fid_samples
    body = "\n".join([
        f"Models trained with the same recipe on the shapes dataset ({num_images} images, {size}x{size} pixels, "
        f"held-out split excluded), compared at the same training step ({args.step}) with their EMA weights; "
        "training commands in docs/training.md. FLOPs: one forward pass of one image (torch FlopCounterMode). "
        f"Time: one pipeline call of {args.time_images} images, {args.time_steps} DDIM steps, guidance "
        f"{args.guidance_scale}, median of {args.runs} runs after 1 warm-up, all models in one process. "
        f"Loss: mean logged training loss over steps {max(1, args.step - LOSS_WINDOW + 1)}-{args.step}. "
        f"FID (legacy-tf, genaccel.eval): {n} "
        f"class-balanced samples ({args.steps} DDIM steps, guidance {args.guidance_scale}, the same labels and "
        f"seeds for every model) against {n} class-balanced real shapes never trained on (the held-out split, topped "
        f"up with renders outside the training set where a class ran short); FID at N={n} is biased upward and only "
        f"comparable at the same N. KID (unbiased at any N): mean ± std over 100 subsets of "
        f"{max(2, min(n, 2000) // 2)}. FLOPs count matrix products, convolutions and attention; the selective scan's "
        "elementwise recurrence (a few FLOPs per channel and state per token) is not included.",
        "",
        f"Device: CPU ({platform.processor() or platform.machine()}, {args.threads} thread(s), {os.cpu_count()} cores; "
        f"1-min load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the timed part); "
        "GPU: not measured. "
        f"Commit: `{git_commit()}`. Command: `{command}`.",
        "",
        markdown_table(["model", "architecture", "params (M)", "GFLOP / image / forward", "CPU time / call (s)",
                        "speed-up", "train loss", f"FID vs held-out real ({n})", f"KID vs held-out real ({n})",
                        f"FID / {baseline} FID"], rows),
        "",
        "Grid (one row per model in table order, one column per class): docs/trained_models_samples.png.",
    ])
    update_section(args.out, "trained-models", body)
    print(body)


if __name__ == "__main__":
    main()
