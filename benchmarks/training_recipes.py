"""Training recipes side by side: gFID / KID of `genaccel train` runs at the same checkpoint step.

The issue's rule for the reference image model is "measure, do not guess": this compares finished
runs that differ only in their recipe (loss weighting, prediction type, learning rate, ...) at each
`--step`, every run sampled with the same labels and seeds. The labels follow the class proportions
of `--real` (the held-out images, never trained on) so that a class imbalance of the data does not
count as a quality difference. Each row states what the run's config changed relative to the first
run, the images seen, the mean training loss over the last 100 logged steps (not comparable across
weightings), gFID (legacy-tf Inception, ± bootstrap std; below 2,000 samples biased, said so) and
KID (± subset std). Writes the `--section` of BENCHMARKS.md with `--write`.

    python benchmarks/training_recipes.py --real data/emoji32/heldout --run uniform=runs/emoji_uniform \
        --run min-snr=runs/emoji_min-snr --step 1000 --fid-samples 500 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from reference_models import fid_and_kid, proportional_labels
from trained_models import checkpoint_of, parse_run, sample_features

from genaccel.bench.markdown import git_commit, markdown_table, update_section
from genaccel.eval.intervals import frechet_sample_note
from genaccel.train.diffusion import pipeline_from_checkpoint

# fields that do not change what a run learns (bookkeeping and the sample grids' sampler)
IGNORED = {"output_dir", "max_minutes", "max_steps", "checkpoint_every", "sample_every", "init_from", "log_every",
           "sample_steps", "guidance_scale"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True, dest="runs",
                        help="NAME=FOLDER of a genaccel train run (repeat; the first is the baseline)")
    parser.add_argument("--step", type=int, action="append", required=True, dest="steps",
                        help="checkpoint step measured in every run (repeat for several)")
    parser.add_argument("--real", required=True, help="held-out image folder (with labels.csv) compared with")
    parser.add_argument("--sample-steps", type=int, default=25, help="DDIM steps per sample (default 25)")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--fid-samples", type=int, default=500)
    parser.add_argument("--fid-batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--section", default="training-recipes", help="BENCHMARKS.md section written")
    parser.add_argument("--write", default=None, help="BENCHMARKS.md to update")
    args = parser.parse_args(argv)
    for name in ("sample_steps", "fid_samples", "fid_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.steps) < 1:
        parser.error(f"--step must be >= 1, got {min(args.steps)}")
    return args


def config_changes(config: dict, baseline: dict) -> str:
    """The recipe fields where `config` differs from `baseline`, as `name=value`, or "baseline"."""
    changed = [f"{key}={config.get(key)}" for key in sorted(set(config) | set(baseline))
               if key not in IGNORED and config.get(key) != baseline.get(key)]
    return ", ".join(changed) or "baseline"


def recent_loss(run: Path, step: int, window: int = 100) -> float | None:
    """Mean logged training loss over the `window` logged steps up to `step` (None without a log)."""
    log = run / "log.jsonl"
    if not log.exists():
        return None
    losses = [entry["loss"] for entry in map(json.loads, log.read_text().splitlines()) if entry["step"] <= step]
    return sum(losses[-window:]) / len(losses[-window:]) if losses else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from genaccel.data.image_folder import ImageFolderDataset
    from genaccel.eval.fid import InceptionExtractor

    checkpoints = {(name, step): checkpoint_of(folder, step) for name, folder in args.runs for step in args.steps}
    started, commit = time.perf_counter(), git_commit()  # the code that ran, not the tree at the end
    try:
        real_set = ImageFolderDataset(args.real)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--real: {error}") from None
    real = torch.stack([((real_set[k][0] + 1) * 127.5).round().to(torch.uint8) for k in range(len(real_set))])
    labels = proportional_labels(args.fid_samples, list(real_set.labels))
    extractor = InceptionExtractor("legacy-tf")
    real_features = extractor(real).numpy()
    baseline = json.loads((checkpoints[args.runs[0][0], args.steps[0]] / "state.json").read_text())["config"]
    sampling = argparse.Namespace(fid_batch=args.fid_batch, seed=args.seed, steps=args.sample_steps,
                                  guidance_scale=args.guidance_scale)
    rows = []
    for (name, step), checkpoint in checkpoints.items():
        config = json.loads((checkpoint / "state.json").read_text())["config"]
        pipe = pipeline_from_checkpoint(checkpoint)
        pipe.set_progress_bar_config(disable=True)
        fake = sample_features(pipe, labels, sampling, f"{name} step {step}", extractor)
        fid, kid_mean, kid_std = fid_and_kid(fake, real_features)
        loss = recent_loss(dict(args.runs)[name], step)
        rows.append([name, config_changes(config, baseline), step, f"{step * config['batch_size']:,}",
                     "n/a" if loss is None else f"{loss:.4f}", fid.format(2), f"{kid_mean:.4f} ± {kid_std:.4f}"])
    wall = time.perf_counter() - started
    command = "python benchmarks/training_recipes.py " + " ".join(sys.argv[1:] if argv is None else argv)
    body = (f"Device: CPU ({torch.get_num_threads()} threads); torch {torch.__version__}; commit {commit}; "
            f"GPU: not measured. Command: `{command.strip()}` ({wall / 60:.1f} min).\n\n"
            f"Baseline recipe ({args.runs[0][0]}): `{config_changes(baseline, {})}`. Each run: EMA weights at the "
            f"step; {args.fid_samples} samples ({args.sample_steps} DDIM steps, guidance {args.guidance_scale}) "
            f"with the class proportions of the {len(real)} held-out images of `{args.real}`, which they are "
            "compared with. gFID: legacy-tf Inception, ± bootstrap std (10 resamples); KID ± subset std. "
            "Training loss: mean of the last 100 logged steps (weighted losses are not comparable with plain ones).\n")
    table = markdown_table(["run", "recipe change", "step", "images seen", "training loss",
                            f"gFID (N={args.fid_samples})", "KID"], rows)
    note = frechet_sample_note("FID", args.fid_samples, len(real))
    body += "\n" + table + (f"\n\n{note}" if note else "")
    print(body)
    if args.write:
        update_section(args.write, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
