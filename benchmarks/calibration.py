"""A calibrated SparsityPlan against the best uniform sparse config of equal measured speed, on unseen calls.

On a bundled reference model (`--model image`: the shapes DiT, `emoji`: the emoji DiT, `video`: the
Wan clip model) at `--size`
(its native size, or larger for more tokens): `genaccel.calibrate` on `--calls` single-output
calls (classes cycled, seeds 0, 1, ...), timed, and once more without step reuse (`step_reuse=False`,
what reuse adds); then, in one process, dense, both plans and a family of
uniform configs (the calibration candidates, each with the first 0 / 25% / 50% of steps dense) on
`--eval` outputs it never calibrated on (seeds from 1000): PSNR / SSIM against dense (mean ± 95%
interval; identical outputs count as 100 dB), the worst PSNR, KID / FID against real held-out images
(image models: held-out shapes, or the `--real` folder with the emoji model's labels in its class
proportions; N stated), and the time of one pipeline call (median of `--runs`, interleaved).
"Equal speed": the uniform configs at least 97% as fast as the plan, as measured; the table
names the best of them by mean PSNR and the plan's margin over it. Writes the BENCHMARKS.md section
"calibration-<model>-<size>".

    python benchmarks/calibration.py --model image --size 32 --threads 1 --write BENCHMARKS.md
    python benchmarks/calibration.py --model image --size 64 --threads 1 --write BENCHMARKS.md
    python benchmarks/calibration.py --model emoji --real EMOJI/heldout --threads 2 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
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
from genaccel.eval.intervals import frechet_sample_note, mean_with_interval  # noqa: E402
from genaccel.eval.timing import time_interleaved  # noqa: E402
from genaccel.plans import default_candidates, format_choice  # noqa: E402
from genaccel.pipelines.reference import REFERENCE_DIRS, load_reference_pipeline  # noqa: E402

IDENTICAL_DB = 100.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["image", "emoji", "video"], default="image")
    parser.add_argument("--real", default=None,
                        help="held-out real images (folder with labels.csv) for KID / FID: needed for the emoji "
                             "model (`genaccel make-data emoji OUT --size 32` writes OUT/heldout)")
    parser.add_argument("--size", type=int, default=None, help="output size in px (default: the model's own)")
    parser.add_argument("--target-psnr", type=float, default=25.0)
    parser.add_argument("--calls", type=int, default=4, help="calibration calls (default 4)")
    parser.add_argument("--eval", type=int, default=64, help="unseen outputs per setting (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="outputs per pipeline call when sampling")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=3, help="timed calls per setting (median)")
    parser.add_argument("--time-outputs", type=int, default=4, help="outputs per timed pipeline call")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plan-out", default=None, help="also save the calibrated plan here")
    parser.add_argument("--write", default=None, help="BENCHMARKS.md to update")
    args = parser.parse_args(argv)
    for name in ("calls", "eval", "batch", "steps", "runs", "time_outputs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.model == "emoji" and args.real is None:
        parser.error("--model emoji needs --real, its held-out glyphs (`genaccel make-data emoji OUT --size 32` "
                     "writes OUT/heldout)")
    if args.model != "emoji" and args.real is not None:
        parser.error(f"--real is the emoji model's held-out set; --model {args.model} brings its own (or none)")
    if args.real is not None:
        from genaccel.data.image_folder import ImageFolderDataset

        try:
            width, height = ImageFolderDataset(args.real).size
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"--real: {error}")
        native = json.loads((REFERENCE_DIRS[args.model] / "manifest.json").read_text())["info"]["config"]["image_size"]
        size = args.size or native
        if (width, height) != (size, size):
            parser.error(f"--real: its images are {width}x{height} px, the outputs {size}x{size}: FID compares "
                         f"images of one size (`genaccel make-data emoji OUT --size {size}`)")
    return args


def uniform_family(grid: tuple[int, ...], steps: int) -> dict[str, genaccel.config.SparseAttentionConfig]:
    """The calibration candidates as uniform configs, each also with its first 25% / 50% of steps dense."""
    family = {}
    for config in default_candidates(grid):
        for fraction in (0, 0.25, 0.5):
            dense_steps = round(fraction * steps)
            name = format_choice(config) + (f", first {dense_steps} steps dense" if dense_steps else "")
            family[name] = type(config)(window=config.window, shift=config.shift, dense_steps=dense_steps)
    return family


def sample(pipe, labels: list[int], args, size: int | None) -> list[np.ndarray]:
    """uint8 outputs: batch b of `labels` from seed 1000 + b, the same for every setting."""
    outputs = []
    for b, start in enumerate(range(0, len(labels), args.batch)):
        result = pipe(labels[start:start + args.batch], num_inference_steps=args.steps,
                      guidance_scale=args.guidance_scale, generator=torch.Generator().manual_seed(1000 + b),
                      output_type="np", **({"image_size": size} if size else {}))
        items = result.frames if hasattr(result, "frames") else result.images
        outputs += [(np.clip(np.asarray(item), 0, 1) * 255).round().astype(np.uint8) for item in items]
    return outputs


def eval_labels_and_real(args, num_classes: int, size: int | None) -> tuple[list[int], torch.Tensor | None, str]:
    """The `--eval` labels to generate, uint8 held-out real images to compare them with, and a note saying
    which: held-out shapes in the labels' class balance (shapes model), every `--real` image with the labels in
    its class proportions (emoji model), none for the video model."""
    if args.model == "video":
        return ([k % num_classes for k in range(args.eval)], None,
                "FID / KID: not measured for the video model here (PSNR / SSIM vs dense only)")
    from reference_models import heldout_real_images, real_images

    data = json.loads((REFERENCE_DIRS[args.model] / "manifest.json").read_text())["info"]["config"]
    if args.real is not None:
        real, labels = real_images(data, args.eval, num_classes, args.real)
        return labels, real, (f"KID / FID against the {len(real)} held-out real images of `{args.real}`, labels "
                              "in their class proportions")
    labels = [k % num_classes for k in range(args.eval)]
    size = size or data["image_size"]
    real = heldout_real_images(args.eval, num_classes, data["num_images"], size, data["data_seed"])
    return labels, real, f"KID / FID against {args.eval} held-out real shapes rendered at {size} px"


def modelled_speedup(config, plan: genaccel.SparsityPlan, steps: int) -> float:
    """The cost model's speed-up of a uniform config (its dense steps as a dense first phase)."""
    if isinstance(config, genaccel.SparsityPlan):
        return config.expected_speedup
    choice = type(config)(window=config.window, shift=config.shift)
    blocks = len(plan.cost_model.attention_widths)
    if config.dense_steps:
        return genaccel.SparsityPlan([[None, choice]] * blocks, (0, config.dense_steps), steps,
                                     plan.cost_model).expected_speedup
    return genaccel.SparsityPlan.uniform(choice, plan.cost_model, steps).expected_speedup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_reference_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    num_classes = pipe.num_classes
    size_kwargs = {"image_size": args.size} if args.size else {}
    calls = [{"class_labels": [k % num_classes], "num_inference_steps": args.steps, "seed": k,
              "guidance_scale": args.guidance_scale, **size_kwargs} for k in range(args.calls)]
    started = time.perf_counter()
    plan = genaccel.calibrate(pipe, calls, target_psnr=args.target_psnr)
    calibration_seconds = time.perf_counter() - started
    if args.plan_out:
        plan.save(args.plan_out)
    without_reuse = genaccel.calibrate(pipe, calls, target_psnr=args.target_psnr, step_reuse=False)
    grid = plan.cost_model.grid
    settings: dict[str, object] = {"dense": None, "calibrated plan": plan,
                                   "calibrated plan without step reuse": without_reuse,
                                   **uniform_family(grid, args.steps)}

    labels, real_uint8, real_note = eval_labels_and_real(args, num_classes, args.size)
    outputs = {}
    for name, config in tqdm(settings.items(), desc="sample", unit="setting"):
        if config is None:
            outputs[name] = sample(pipe, labels, args, args.size)
        else:
            with genaccel.applied(pipe, config):
                outputs[name] = sample(pipe, labels, args, args.size)

    def call(config):
        def run():
            if config is not None:
                genaccel.apply(pipe, config)
            try:
                pipe(labels[:args.time_outputs], num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                     generator=torch.Generator().manual_seed(0), output_type="np", **size_kwargs)
            finally:
                if config is not None:
                    genaccel.remove(pipe)
        return run

    with torch.no_grad():
        timings = time_interleaved({name: call(config) for name, config in settings.items()}, warmup=1,
                                   runs=args.runs)
    real = None
    if real_uint8 is not None:
        from genaccel.eval.fid import InceptionExtractor

        extractor = InceptionExtractor("legacy-tf")
        real = extractor(real_uint8).numpy()
    size = outputs["dense"][0].shape[-2]
    from reference_models import fid_and_kid

    dense_seconds = timings["dense"].median_s
    results = {}
    for name in settings:
        values = [min(psnr(a, b), IDENTICAL_DB) for a, b in zip(outputs[name], outputs["dense"])]
        similarity = [ssim(a, b) for a, b in zip(outputs[name], outputs["dense"])]
        row = {"seconds": timings[name].median_s, "speedup": dense_seconds / timings[name].median_s,
               "psnr": mean_with_interval(values), "worst": min(values), "ssim": mean_with_interval(similarity)}
        if real is not None:
            fake = extractor(torch.from_numpy(np.stack(outputs[name])).permute(0, 3, 1, 2)).numpy()
            fid, kid, kid_std = fid_and_kid(fake, real)
            row.update(fid=fid.format(1), kid=f"{kid:.4f} ± {kid_std:.4f}")
        results[name] = row
    plan_row = results["calibrated plan"]
    rivals = {name: row for name, row in results.items() if not name.startswith(("dense", "calibrated plan"))
              and row["speedup"] >= 0.97 * plan_row["speedup"]}
    best = max(rivals, key=lambda name: rivals[name]["psnr"].value) if rivals else None

    headers = ["setting", "s / call", "measured speed-up", "modelled speed-up", "PSNR vs dense (dB)",
               "worst PSNR", "SSIM vs dense"] + (["KID vs real", f"FID vs real (N={args.eval})"] if real is not None
                                                 else [])
    rows = []
    for name, config in settings.items():
        row = results[name]
        modelled = 1.0 if config is None else modelled_speedup(config, plan, args.steps)
        label = f"**{name}**" if name in ("calibrated plan", best) else name
        cells = [label, f"{row['seconds']:.3f}", f"{row['speedup']:.2f}x",
                 f"{modelled:.2f}x",
                 "exact" if name == "dense" else row["psnr"].format(2),
                 "exact" if name == "dense" else f"{row['worst']:.2f}",
                 "exact" if name == "dense" else row["ssim"].format(3)]
        if real is not None:
            cells += [row["kid"], row["fid"]]
        rows.append(cells)
    info = plan.calibration
    tokens = math.prod(grid)
    verdict = (f"Best uniform config at least as fast (>= 97% of the plan's measured speed-up): **{best}**, "
               f"{results[best]['psnr'].value:.2f} dB; the plan's margin over it: "
               f"**{plan_row['psnr'].value - results[best]['psnr'].value:+.2f} dB** mean PSNR vs dense."
               if best else "No uniform config is as fast as the plan here (measured).")
    body = (f"Device: CPU ({torch.get_num_threads()} threads); torch {torch.__version__}; commit {git_commit()}; "
            f"GPU: not measured. Command: `python benchmarks/calibration.py {' '.join(sys.argv[1:] if argv is None else argv)}`.\n\n"
            f"Reference {args.model} model at {size} px: token grid {'x'.join(map(str, grid))} ({tokens} tokens), "
            f"{args.steps} DDIM steps, guidance {args.guidance_scale}. Calibration: `genaccel.calibrate` on "
            f"{args.calls} calls (seeds 0-{args.calls - 1}), target PSNR {args.target_psnr} dB + margin "
            f"{info['margin']}, {info['trials']} trials, {calibration_seconds:.1f} s = {info['dense_generations']} "
            f"dense calls per calibration call; worst PSNR on its calls {info['worst_on_calls']:.2f} dB. "
            f"Evaluation: {args.eval} outputs from seeds the calibration never used (classes cycled); PSNR / SSIM "
            f"mean ± 95% interval over outputs; time: one call of {args.time_outputs} outputs, median of "
            f"{args.runs} interleaved runs after a warm-up. {real_note}.\n\n"
            f"Plan (phases of the {plan.num_inference_steps} steps: blocks per choice; \"+reuse\": odd steps reuse "
            f"the block's previous output):\n\n```\n{plan.summary()}\n```\n\n"
            f"Calibrated without step reuse (`step_reuse=False`, the candidates alone; "
            f"{without_reuse.calibration['seconds']:.1f} s):\n\n```\n{without_reuse.summary()}\n```\n\n"
            + markdown_table(headers, rows) + "\n\n" + verdict + "\n")
    note = frechet_sample_note("FID", args.eval) if real is not None else None
    if note:
        body += f"\n{note}.\n"
    print(body)
    if args.write:
        update_section(args.write, f"calibration-{args.model}-{size}", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
