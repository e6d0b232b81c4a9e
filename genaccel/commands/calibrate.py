"""`genaccel calibrate MODEL --out plan.json`: a per-block, per-step sparsity plan within a fidelity budget.

Runs `genaccel.calibrate` on the prompts (or class labels) x seeds given, writes the plan as JSON
(readable and editable; `genaccel bench --methods plan:plan.json` measures it) and prints a summary.
"""

from __future__ import annotations

import argparse

from genaccel.commands._support import default_device, user_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate", help="calibrate a per-block, per-step sparse attention plan",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="`demo`, `demo-emoji`, `demo-random`, a local pipeline folder or a hub id (as genaccel bench)")
    parser.add_argument("--out", required=True, help="where to write the plan JSON")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-psnr", type=float, default=None,
                        help="worst PSNR (dB) against dense the plan may reach on the calls (default 30)")
    target.add_argument("--target-ssim", type=float, default=None, help="or a worst SSIM against dense")
    parser.add_argument("--margin", type=float, default=None,
                        help="kept on top of the target for calls not calibrated on (default 1 dB, or 0.01 SSIM)")
    parser.add_argument("--prompts", default=None, help="text file, one prompt (or class id / name) per line")
    parser.add_argument("--num", "--num-prompts", dest="num_prompts", type=int, default=4,
                        help="use the first N prompts (default 4)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; every prompt runs with each")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--phases", type=int, default=4, help="step ranges with their own choices (default 4)")
    parser.add_argument("--max-trials", type=int, default=8,
                        help="plans run on the calls during the search (default 8)")
    parser.add_argument("--candidates", nargs="+", default=None,
                        help="choices as bench methods (proxy:8x8, window:8x8+shift, ...); default: derived "
                             "from the token grid (genaccel.plans.default_candidates)")
    parser.add_argument("--step-reuse", action=argparse.BooleanOptionalAction, default=True,
                        help="also offer each candidate and dense with '+reuse' (odd steps reuse the block's "
                             "previous output; default on)")
    parser.add_argument("--backend", default="auto", help="attention backend the plan uses")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(func=run)


def calls_from(args: argparse.Namespace, pipe) -> list[dict]:
    """Keyword dicts for pipe(...): every condition with every seed."""
    from genaccel.commands.bench import _conditions
    from genaccel.pipelines.loading import is_class_conditional

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    class_conditional = is_class_conditional(pipe)
    calls = []
    for condition in _conditions(args, pipe):
        for seed in seeds:
            call: dict = {"num_inference_steps": args.steps, "seed": seed}
            if class_conditional:
                call["class_labels"] = [int(condition)]
            else:
                call["prompt"] = str(condition)
                call.update({k: v for k, v in (("height", args.height), ("width", args.width)) if v is not None})
            if args.guidance_scale is not None:
                call["guidance_scale"] = args.guidance_scale
            calls.append(call)
    return calls


def run(args: argparse.Namespace) -> int:
    import genaccel
    from genaccel.pipelines.loading import load_pipeline, parse_dtype
    from genaccel.pipelines.methods import parse_method

    with user_errors():
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        candidates = None
        if args.candidates:
            methods = [parse_method(spec) for spec in args.candidates]
            if any(m.config is None or isinstance(m.config, genaccel.SparsityPlan) for m in methods):
                raise ValueError("--candidates are sparse methods (proxy:HxW, window:HxW[+shift]), not dense or plans")
            candidates = [m.config for m in methods]
        pipe = load_pipeline(args.model, args.device or default_device(), parse_dtype(args.dtype))
        calls = calls_from(args, pipe)
        target_psnr = 30.0 if args.target_psnr is None and args.target_ssim is None else args.target_psnr
        plan = genaccel.calibrate(pipe, calls, target_psnr, target_ssim=args.target_ssim, candidates=candidates,
                                  phases=args.phases, margin=args.margin, max_trials=args.max_trials,
                                  step_reuse=args.step_reuse, backend=args.backend)
        path = plan.save(args.out)
    info = plan.calibration
    (metric, target), = info["target"].items()
    worst = "identical" if info["worst_on_calls"] is None else f"{info['worst_on_calls']:.2f}"
    print(f"wrote {path}: modelled speed-up {plan.expected_speedup:.2f}x; worst {metric} on the {len(calls)} calls "
          f"{worst} (target {target} + margin {info['margin']}); {info['seconds']:.1f} s, "
          f"{info['dense_generations']} dense calls per call")
    print(plan.summary())
    return 0
