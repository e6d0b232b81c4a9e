"""`genaccel bench`: dense vs sparse-attention methods on the same prompts and seeds.

Writes OUT/<method>/ outputs, OUT/report.md, OUT/report.json, OUT/speed_quality.png and OUT/grid.png;
a rerun skips outputs that are already there. Shard over processes with
`accelerate launch -m genaccel bench ...`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from genaccel.commands._support import default_device, user_errors
from genaccel.eval.intervals import DEFAULT_RESAMPLES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="speed and fidelity of sparse attention on a diffusers pipeline",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo",
                        help="`demo` (the reference DiT genaccel trained, 32 px), `demo-emoji` (its emoji DiT, 32 px), "
                             "`demo-random` (a 4096-token DiT with "
                             "random weights, for speed), a local pipeline folder or a hub id (default: demo)")
    parser.add_argument("--methods", nargs="+", default=["dense", "proxy:4x4", "window:8x8"],
                        help="dense, proxy:HxW, window:HxW, with +shift / +alternate / +dense-steps=N ..., "
                             "separated by spaces or commas "
                             "(dense is always run: fidelity is measured against it)")
    parser.add_argument("--prompts", default=None,
                        help="text file, one prompt per line (class ids or names for class-conditional "
                             "pipelines); default: a built-in set")
    parser.add_argument("--num", "--num-prompts", dest="num_prompts", type=int, default=None,
                        help="use only the first N prompts")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; every prompt runs with each")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--real", default=None,
                        help="real images (folder or .npz from `genaccel fid-stats`) for FID, or videos for FVD")
    parser.add_argument("--fid-mode", default="legacy-tf", choices=["legacy-tf", "clean"])
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples behind each FID / FVD interval; 0: no interval "
                             f"(default {DEFAULT_RESAMPLES}; each costs one Frechet distance)")
    parser.add_argument("-o", "--out", default="bench-out", help="output folder (default: bench-out)")
    parser.set_defaults(func=run)


def _conditions(args: argparse.Namespace, pipe) -> list:
    from genaccel.pipelines.loading import is_class_conditional
    from genaccel.pipelines.prompts import BUILTIN_PROMPTS, builtin_class_labels, class_labels, load_prompts

    class_conditional = is_class_conditional(pipe)
    if args.prompts:
        prompts = load_prompts(args.prompts)
        conditions = class_labels(prompts, pipe) if class_conditional else prompts
    else:
        conditions = builtin_class_labels(pipe) if class_conditional else list(BUILTIN_PROMPTS)
    if args.num_prompts is not None:
        if args.num_prompts < 1:
            raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
        conditions = conditions[:args.num_prompts]
    return conditions


def run(args: argparse.Namespace) -> int:
    from genaccel.bench.pipelines import BenchSettings, WorkItem, evaluate, generate_method, load_output
    from genaccel.eval.distributed import is_main_process
    from genaccel.bench.markdown import git_commit
    from genaccel.bench.report import image_grid, plot_speed_quality, write_report
    from genaccel.pipelines.loading import load_pipeline, parse_dtype, quiet
    from genaccel.pipelines.methods import parse_methods

    with user_errors():
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        if args.bootstrap < 0:
            raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
        methods = parse_methods(args.methods)
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        if args.real and not Path(args.real).exists():
            raise FileNotFoundError(f"--real {args.real} does not exist")
        device = args.device or default_device()
        pipe = quiet(load_pipeline(args.model, device, parse_dtype(args.dtype)))
        conditions = _conditions(args, pipe)
        items = [WorkItem(i * len(seeds) + j, c, s) for i, c in enumerate(conditions) for j, s in enumerate(seeds)]
        out_dir = Path(args.out)
        settings = BenchSettings(out_dir=out_dir, steps=args.steps, guidance_scale=args.guidance_scale,
                                 height=args.height, width=args.width, device=device, real=args.real,
                                 fid_mode=args.fid_mode, model=args.model, resamples=args.bootstrap,
                                 command="genaccel " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        for method in methods:
            generate_method(pipe, method, items, settings)
        if not is_main_process():
            return 0
        results = evaluate(methods, items, settings)
        meta = {"model": args.model, "steps": args.steps, "device": device, "commit": git_commit(),
                "command": settings.command, "seeds": seeds, "num_outputs": len(items),
                "resamples": args.bootstrap}
        write_report(out_dir, results, meta)
        plot_speed_quality(out_dir, results)
        shown = items[:8]
        grid = [[load_output(_existing(out_dir, m, it.index)) for it in shown] for m in methods]
        image_grid(out_dir, [m.spec for m in methods], grid)
    print((out_dir / "report.md").read_text())
    return 0


def _existing(out_dir: Path, method, index: int) -> Path:
    from genaccel.bench.pipelines import output_path

    image = output_path(out_dir, method, index, video=False)
    return image if image.exists() else output_path(out_dir, method, index, video=True)
