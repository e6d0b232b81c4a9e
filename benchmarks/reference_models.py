"""Dense vs training-free sparse attention on the bundled reference DiT (genaccel.pipelines.reference).

Samples the same classes from the same seeds with dense attention and with genaccel's proxy and
window attention, and reports PSNR/SSIM of the sparse images against the dense ones and the
wall-clock time of one pipeline call (median of runs, same process). Writes the table into the
"reference-models" section of BENCHMARKS.md and sample grids into docs/.

    python benchmarks/reference_models.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import genaccel  # noqa: E402
from genaccel.eval.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402
from genaccel.pipelines.class_conditional import image_grid  # noqa: E402
from genaccel.pipelines.reference import REFERENCE_DIR, load_reference_pipeline  # noqa: E402


def variants(steps: int) -> dict[str, genaccel.config.SparseAttentionConfig | None]:
    """The attention settings compared; windows count tokens of the 16x16 grid."""
    return {
        "dense": None,
        "proxy 8x8": genaccel.ProxyAttentionConfig(window=(8, 8)),
        "proxy 4x4": genaccel.ProxyAttentionConfig(window=(4, 4)),
        "proxy 4x4, first 20% steps dense": genaccel.ProxyAttentionConfig(window=(4, 4), dense_steps=max(1, steps // 5)),
        "window 8x8, shift alternate": genaccel.WindowAttentionConfig(window=(8, 8), shift="alternate"),
        "window 4x4, shift alternate": genaccel.WindowAttentionConfig(window=(4, 4), shift="alternate"),
    }


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB) of images in [0, 1] against the reference images."""
    mse = (images - reference).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(images, reference, data_range=1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2, help="images per class (default 2)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant (median reported)")
    parser.add_argument("--time-images", type=int, default=8, help="images per timed call (default 8)")
    parser.add_argument("--time-steps", type=int, default=5, help="DDIM steps per timed call (default 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = load_reference_pipeline()
    pipe.set_progress_bar_config(disable=True)
    labels = [c for _ in range(args.per_class) for c in range(pipe.num_classes)]

    timed_labels = [k % pipe.num_classes for k in range(args.time_images)]

    def sample(batch: list[int] = labels, steps: int = args.steps) -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return pipe(batch, num_inference_steps=steps, generator=generator,
                    guidance_scale=args.guidance_scale, output_type="pt").images

    settings = variants(args.steps)
    results, images = [], {}
    for name, config in settings.items():
        if config is not None:
            genaccel.apply(pipe, config)
        try:
            images[name] = sample()
            timing = time_callable(lambda: sample(timed_labels, args.time_steps), warmup=1, runs=args.runs)
        finally:
            if config is not None:
                genaccel.remove(pipe)
        results.append((name, timing.median_s))
        print(f"{name}: {timing.median_s:.3f} s", flush=True)

    dense, dense_s = images["dense"], results[0][1]
    rows = []
    for name, seconds in results:
        quality = ("exact", "exact") if name == "dense" else (f"{psnr(images[name], dense):.2f}",
                                                               f"{ssim(images[name], dense):.4f}")
        rows.append([name, f"{seconds:.3f}", f"{dense_s / seconds:.2f}x", *quality, "not measured"])

    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    to_pil = lambda batch: [Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy()) for x in batch]
    grid = image_grid(to_pil(dense), columns=pipe.num_classes)
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(docs / "demo_dit_samples.png")
    first_row = slice(0, pipe.num_classes)
    compare = image_grid([im for name in settings for im in to_pil(images[name][first_row])], columns=pipe.num_classes)
    compare.resize((compare.width * 2, compare.height * 2), Image.Resampling.NEAREST).save(
        docs / "demo_dit_dense_vs_sparse.png")

    manifest_steps = __import__("json").loads((REFERENCE_DIR / "manifest.json").read_text())["info"].get("steps")
    body = "\n".join([
        f"Bundled reference model `demo_dit` (DiTTransformer2DModel, 32x32 pixels, 16x16 tokens, trained "
        f"on the shapes dataset; {manifest_steps} steps in its last phase, see docs/training.md), {len(labels)} images ({args.per_class} per class), "
        f"{args.steps} DDIM steps, guidance {args.guidance_scale} (a CFG batch of {2 * len(labels)}), seed {args.seed}. "
        "PSNR/SSIM: sparse-attention images against the dense images from the same seeds. "
        f"Time: one pipeline call of {args.time_images} images and {args.time_steps} DDIM steps (same guidance), "
        f"median of {args.runs} runs after 1 warm-up, dense and sparse in the same process.",
        "",
        f"Device: CPU ({platform.processor() or platform.machine()}, {args.threads} thread(s)); "
        f"GPU: not measured. Commit: `{git_commit()}`. Command: `python benchmarks/reference_models.py "
        f"--per-class {args.per_class} --steps {args.steps} --guidance-scale {args.guidance_scale} "
        f"--runs {args.runs} --time-images {args.time_images} --time-steps {args.time_steps} "
        f"--threads {args.threads} --seed {args.seed}`.",
        "",
        markdown_table(["attention", "CPU time / call (s)", "speed-up", "PSNR vs dense (dB)", "SSIM vs dense",
                        "GPU"], rows),
        "",
        "FID against held-out real images: not measured (genaccel.eval FID is not on this branch yet).",
        "Grids: docs/demo_dit_samples.png (dense), docs/demo_dit_dense_vs_sparse.png (rows in table order).",
    ])
    update_section(args.out, "reference-models", body)
    print(body)


if __name__ == "__main__":
    main()
