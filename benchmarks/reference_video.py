"""Dense vs training-free sparse attention on the bundled reference video model (moving emoji, Wan).

Samples `--clips` clips per setting (the same classes and seeds for every setting) with dense
attention and with genaccel's proxy and window attention; reports, side by side in one process:
PSNR / SSIM of each setting's clips against the dense clips (mean over clips with a 95% interval),
FVD against as many held-out real clips (I3D, bootstrap std, and the sample-size note: FVD from a few
hundred clips is biased and only comparable at the same N), and the wall-clock time of one pipeline
call (median of `--runs` after a warm-up). Writes the "reference-video" section of BENCHMARKS.md.

The real clips are the held-out split of `genaccel make-data emoji-videos` at the model's size and
frame count (seed 0): rendered here, which needs the emoji font (without it FVD is skipped, saying so).

    python benchmarks/reference_video.py --threads 2 --clips 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import genaccel  # noqa: E402
from genaccel.bench.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.fidelity import psnr, ssim  # noqa: E402
from genaccel.eval.intervals import bootstrap_frechet, frechet_sample_note, mean_with_interval  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402

SECTION = "reference-video"


def settings() -> dict[str, genaccel.config.SparseAttentionConfig | None]:
    """The attention settings compared; windows count tokens of the (frames, h, w) token grid."""
    return {
        "dense": None,
        "proxy 1x4x4": genaccel.ProxyAttentionConfig(window=(1, 4, 4)),
        "proxy 4x4x4": genaccel.ProxyAttentionConfig(window=(4, 4, 4)),
        "window 4x4x4, shift alternate": genaccel.WindowAttentionConfig(window=(4, 4, 4), shift="alternate"),
        "window 1x8x8, shift alternate": genaccel.WindowAttentionConfig(window=(1, 8, 8), shift="alternate"),
    }


def sample_clips(pipe, labels: list[int], *, steps: int, guidance_scale: float, batch: int, seed: int) -> np.ndarray:
    """(N, T, H, W, 3) uint8 clips: batch b of `labels` from seed (seed + b), the same for every setting."""
    clips = []
    for b, start in enumerate(range(0, len(labels), batch)):
        frames = pipe(labels[start:start + batch], num_inference_steps=steps, guidance_scale=guidance_scale,
                      generator=torch.Generator().manual_seed(seed + b)).frames
        clips += [(clip * 255).round().astype(np.uint8) for clip in frames]
    return np.stack(clips)


def real_clips(count: int, size: int, frames: int) -> tuple[np.ndarray | None, str | None]:
    """`count` held-out moving-emoji clips, or (None, why) where the font is missing."""
    from genaccel.data.emoji_videos import render_emoji_video

    try:
        return np.stack([render_emoji_video(0, "heldout", index, size, frames)[0] for index in range(count)]), None
    except FileNotFoundError as error:
        return None, f"FVD not measured: {error}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="a bundled video pipeline folder (default: the reference)")
    parser.add_argument("--clips", type=int, default=64, help="clips per setting for PSNR / SSIM / FVD (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="clips per pipeline call when sampling (default 16)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=3, help="timed pipeline calls per setting (median)")
    parser.add_argument("--time-clips", type=int, default=4, help="clips per timed pipeline call (default 4)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fvd", action="store_true", help="skip FVD (no I3D weights or font needed)")
    parser.add_argument("--write", default=None, metavar="BENCHMARKS.md")
    args = parser.parse_args(argv)
    for name in ("clips", "batch", "steps", "runs", "time_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.clips < 2 and not args.no_fvd:
        parser.error("FVD needs --clips >= 2 (or pass --no-fvd)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commit = git_commit()
    if args.threads:
        torch.set_num_threads(args.threads)
    from genaccel.pipelines.reference import load_reference_pipeline
    from genaccel.train.bundle import load_bundled_pipeline

    pipe = load_bundled_pipeline(args.bundle) if args.bundle else load_reference_pipeline("video")
    if "num_frames" not in pipe.config:
        raise SystemExit(f"--bundle {args.bundle} holds an image pipeline; this benchmark takes a video one "
                         "(a bundle of `genaccel train --arch wan`)")
    pipe.set_progress_bar_config(disable=True)
    frames, size = pipe.config.num_frames, pipe.config.image_size
    labels = [k % pipe.num_classes for k in range(args.clips)]
    started = time.perf_counter()
    clips, seconds = {}, {}
    for name, config in tqdm(settings().items(), desc="settings"):
        if config is not None:
            genaccel.apply(pipe, config)
        try:
            clips[name] = sample_clips(pipe, labels, steps=args.steps, guidance_scale=args.guidance_scale,
                                       batch=args.batch, seed=args.seed)
            timed = lambda: pipe(labels[:args.time_clips], num_inference_steps=args.steps,  # noqa: E731
                                 guidance_scale=args.guidance_scale, generator=torch.Generator().manual_seed(0))
            seconds[name] = time_callable(timed, warmup=1, runs=args.runs).median_s
        finally:
            if config is not None:
                genaccel.remove(pipe)
    fvd, notes = {}, []
    if not args.no_fvd:
        real, why = real_clips(args.clips, size, frames)
        if real is None:
            notes.append(why)
        else:
            from genaccel.eval.fvd import I3DExtractor

            extractor = I3DExtractor()
            real_features = extractor(torch.from_numpy(real)).numpy()
            for name, generated in tqdm(clips.items(), desc="I3D"):
                fvd[name] = bootstrap_frechet(extractor(torch.from_numpy(generated)).numpy(), real_features,
                                              resamples=10)
            notes.append(frechet_sample_note("FVD", args.clips, len(real)) or "")
    dense = clips["dense"]
    rows = []
    for name in clips:
        pairs = list(zip(clips[name], dense))
        quality = [mean_with_interval([min(psnr(a, b), 100.0) for a, b in pairs]).format(2),
                   mean_with_interval([ssim(a, b) for a, b in pairs]).format(3)]
        rows.append([name, f"{seconds[name]:.3f}", f"{seconds['dense'] / seconds[name]:.2f}x", *quality,
                     fvd[name].format(1) if name in fvd else "not measured"])
    wall = time.perf_counter() - started
    device = f"CPU ({torch.get_num_threads()} threads)"
    command = "python benchmarks/reference_video.py " + " ".join(sys.argv[1:] if argv is None else argv)
    grid = "x".join(str(n) for n in (frames // pipe.transformer.config.patch_size[0],
                                     size // pipe.transformer.config.patch_size[1],
                                     size // pipe.transformer.config.patch_size[2]))
    header = (f"Device: {device}; torch {torch.__version__}; commit {commit}. Command: `{command.strip()}` "
              f"({wall:.0f} s in all).\n\nReference video model: {type(pipe.transformer).__name__}, "
              f"{frames} frames of {size}x{size} px, token grid {grid}, {pipe.num_classes} classes; "
              f"{args.clips} clips per setting (classes cycled, batch b seeded {args.seed} + b, the same for every "
              f"setting), {args.steps} DDIM steps, guidance {args.guidance_scale}. Time: one pipeline call of "
              f"{args.time_clips} clips, median of {args.runs} after a warm-up. PSNR / SSIM vs the dense clips: "
              "mean over clips ± 95% interval (identical clips count as 100 dB). FVD vs as many held-out real "
              "clips (I3D, first 16 frames): ± bootstrap std over 10 resamples.\n")
    table = markdown_table(["setting", "s / call", "speed-up", "PSNR vs dense (dB)", "SSIM vs dense",
                            f"FVD vs held-out real (N={args.clips})"], rows)
    body = header + "\n" + table + "".join(f"\n\n{note}" for note in notes if note)
    body += "\n\nGPU: not measured (no GPU was lent to the session that produced this table)."
    print(body)
    if args.write:
        update_section(args.write, SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
