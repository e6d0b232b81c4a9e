"""`genaccel bench-attention`: dense SDPA vs window vs proxy attention, written to BENCHMARKS.md.

Attention alone; whole transformer steps at users' sizes are `benchmarks/transformer_step.py`'s."""

from __future__ import annotations

import argparse
import sys

import torch

from genaccel.bench.attention import VIDEO_GEOMETRY, device_description, image_geometries, run_geometry
from genaccel.errors import UserFacingError
from genaccel.bench.markdown import git_commit, markdown_table, update_section


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench-attention", help="time dense vs window vs proxy attention",
                                   description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per method (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-video", action="store_true", help="skip the CogVideoX-5B geometry")
    parser.add_argument("--write", default=None, metavar="BENCHMARKS.md",
                        help="write the table into this file's `attention` section")


def run(args: argparse.Namespace) -> int:
    commit = git_commit()  # the code that is measured, whatever is committed while it runs
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise UserFacingError(f"--runs must be >= 1, --warmup >= 0 and --threads >= 1; got {args.runs}, "
                              f"{args.warmup}, {args.threads}")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise UserFacingError(f"--device {args.device!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserFacingError("--device cuda: this torch build or machine has no CUDA; use --device cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    geometries = image_geometries(device) + ([] if args.no_video else [VIDEO_GEOMETRY])
    rows = []
    for geometry in geometries:
        print(f"timing {geometry.name} ...", file=sys.stderr, flush=True)
        rows += run_geometry(geometry, device=device, dtype=dtype, runs=args.runs, warmup=args.warmup)
    table = markdown_table(
        ["geometry", "tokens", "heads x dim", "method", "median ms", "speedup vs dense", "ideal (FLOPs)", "share of ideal"],
        [[r["geometry"], r["tokens"], r["heads"], r["method"], f"{r['median_ms']:.1f}", f"{r['speedup']:.2f}x",
          *((f"{r['ideal']:.1f}x", f"{100 * r['share']:.0f}%") if r["ideal"] == r["ideal"] else ("-", "-"))]
         for r in rows])
    command = "python benchmarks/attention.py " + " ".join(sys.argv[1:])
    header = (f"Device: {device_description(device)}, {dtype}; torch {torch.__version__}; commit {commit}; "
              f"batch 1; median of {args.runs} interleaved runs after {args.warmup} warm-up.\n"
              f"Command: `{command.strip()}`\n")
    print(header)
    print(table)
    if args.write:
        gpu_note = "" if device.type == "cuda" else "\n\nGPU: not measured (no GPU was lent to the session that produced this table)."
        update_section(args.write, "attention", header + "\n" + table + gpu_note)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    parser.set_defaults(write="BENCHMARKS.md")
    return run(parser.parse_args(argv))
