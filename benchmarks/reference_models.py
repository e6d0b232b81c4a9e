"""Dense vs training-free sparse attention on the bundled reference DiT (genaccel.pipelines.reference).

Samples the same classes from the same seeds with dense attention and with genaccel's proxy and
window attention, and reports PSNR/SSIM of the sparse images against the dense ones and the
wall-clock time of one pipeline call (median of runs, same process). With `--fid-samples N` it also
samples N images per setting and reports legacy-tf FID / KID against held-out real images (N
class-balanced shapes for the shapes model; `--real FOLDER`, with labels in its class proportions,
for any other bundle given as `--model FOLDER`) and, for the sparse settings, against the dense samples. Writes the table into
the "reference-models" section of BENCHMARKS.md and sample grids into docs/.

    python benchmarks/reference_models.py --threads 1 --fid-samples 256
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import genaccel  # noqa: E402
from genaccel.data.shapes import ShapesDataset, render_shape  # noqa: E402
from genaccel.eval.fid import InceptionExtractor  # noqa: E402
from genaccel.eval.intervals import Estimate, bootstrap_frechet  # noqa: E402
from genaccel.eval.kid import kernel_inception_distance  # noqa: E402
from genaccel.bench.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402
from genaccel.pipelines.class_conditional import image_grid  # noqa: E402
from genaccel.pipelines.reference import REFERENCE_DIRS  # noqa: E402
from genaccel.train.bundle import load_bundled_pipeline  # noqa: E402


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


@contextmanager
def attention(pipe, config: genaccel.config.SparseAttentionConfig | None) -> Iterator[None]:
    """Run the block with `config` applied to the pipeline (dense when None), removed afterwards."""
    if config is not None:
        genaccel.apply(pipe, config)
    try:
        yield
    finally:
        if config is not None:
            genaccel.remove(pipe)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB) of images in [0, 1] against the reference images."""
    mse = (images - reference).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(images, reference, data_range=1.0))


def balanced_labels(count: int, num_classes: int) -> list[int]:
    """`count` labels cycling through the classes, so class counts differ by at most one."""
    if count < 0 or num_classes < 1:
        raise ValueError(f"need count >= 0 and num_classes >= 1, got {count} and {num_classes}")
    return [k % num_classes for k in range(count)]


def heldout_real_images(count: int, num_classes: int, num_images: int, size: int, seed: int) -> torch.Tensor:
    """(count, 3, size, size) uint8 real shapes never trained on, with the class counts of `balanced_labels`.

    Walks the held-out split in order and keeps an image while its class is below its quota, so the
    real set has the same class balance as the generated one. Where the split runs short of a class
    (it is a random 10%), it continues with renders at indices num_images, num_images + 1, ...: the
    same distribution, outside the training set (which only uses indices below num_images).
    """
    quota = np.bincount(balanced_labels(count, num_classes), minlength=num_classes)
    dataset = ShapesDataset(num_images, size, seed, split="heldout")
    fresh = (render_shape(seed, index, size) for index in itertools.count(num_images))
    chosen = []
    for image, label in itertools.chain((dataset.image(item) for item in range(len(dataset))), fresh):
        if len(chosen) == count:
            break
        if quota[label] > 0:
            quota[label] -= 1
            chosen.append(torch.from_numpy(np.array(image)).permute(2, 0, 1))
    return torch.stack(chosen)


def proportional_labels(count: int, real_labels: list[int]) -> list[int]:
    """`count` labels with the class proportions of `real_labels` (cycled in order, so exact when count
    is a multiple of their number)."""
    if not real_labels:
        raise ValueError("the real folder has no labelled images")
    return [real_labels[k % len(real_labels)] for k in range(count)]


def real_images(data: dict, count: int, num_classes: int, real: str | None) -> tuple[torch.Tensor, list[int]]:
    """(uint8 real images, labels to generate) for FID against data a model never trained on.

    `real` (a held-out folder with labels.csv): all its images, and `count` labels in its class
    proportions. Without it, a model trained on the generated shapes (`data` is its training config)
    gets `count` held-out shapes with `balanced_labels`; any other model needs `real`.
    """
    if real is not None:
        from genaccel.data.image_folder import ImageFolderDataset

        folder = ImageFolderDataset(real)
        images = torch.stack([((folder[k][0] + 1) * 127.5).round().to(torch.uint8) for k in range(len(folder))])
        return images, proportional_labels(count, list(folder.labels))
    if data.get("data") != "shapes":
        raise ValueError(f"the model was trained on {data.get('data')!r}, not the generated shapes: pass --real "
                         "with its held-out images (`genaccel make-data emoji OUT` writes OUT/heldout)")
    images = heldout_real_images(count, num_classes, data["num_images"], data["image_size"], data["data_seed"])
    return images, balanced_labels(count, num_classes)


def model_folder(model: str) -> Path:
    """The bundle folder of `model`: a kind of genaccel.pipelines.reference ('image', 'video') or a folder
    written by `python -m genaccel.train.bundle`."""
    if model in REFERENCE_DIRS:
        return REFERENCE_DIRS[model]
    if not (Path(model) / "manifest.json").exists():
        raise ValueError(f"--model must be one of {sorted(REFERENCE_DIRS)} or a bundled pipeline folder (with "
                         f"manifest.json), got {model!r}")
    return Path(model)


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]) -> None:
    """A one-line parser error for the first option in `names` below 1 (counts of runs, images, steps)."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def fid_and_kid(fake: np.ndarray, real: np.ndarray, resamples: int = 10) -> tuple[Estimate, float, float]:
    """FID with its bootstrap std (`resamples` draws of each side), and KID (mean, std over 100 seeded
    subsets of half the samples, at most 1000) of two feature sets."""
    fid = bootstrap_frechet(fake, real, resamples=resamples)
    kid = kernel_inception_distance(real, fake, subset_size=max(2, min(len(fake), len(real), 2000) // 2),
                                    generator=torch.Generator().manual_seed(0))
    return fid, *kid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2, help="images per class (default 2)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant (median reported)")
    parser.add_argument("--time-images", type=int, default=8, help="images per timed call (default 8)")
    parser.add_argument("--time-steps", type=int, default=5, help="DDIM steps per timed call (default 5)")
    parser.add_argument("--scale-sizes", type=int, nargs="*", default=[64, 128],
                        help="larger image sizes (pixels) at which each setting is also timed, outside the "
                             "training distribution: time only (default 64 128)")
    parser.add_argument("--scale-images", type=int, default=1, help="images per timed call at --scale-sizes (default 1)")
    parser.add_argument("--scale-steps", type=int, default=5, help="DDIM steps per timed call at --scale-sizes (default 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="image",
                        help="a bundled reference kind (image) or a bundle folder (default image)")
    parser.add_argument("--real", default=None,
                        help="held-out real images (folder with labels.csv) for FID; needed unless the model was "
                             "trained on the generated shapes")
    parser.add_argument("--fid-samples", type=int, default=256,
                        help="images per setting (and held-out real images) for FID; 0 skips FID (default 256)")
    parser.add_argument("--fid-batch", type=int, default=64, help="images per pipeline call for FID (default 64)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--section", default="reference-models",
                        help="BENCHMARKS.md section written (default reference-models)")
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    if args.fid_samples != 0 and args.fid_samples < 2:
        parser.error(f"--fid-samples must be 0 (skip FID) or >= 2 (a covariance needs two samples), got {args.fid_samples}")
    require_positive(parser, args, ["per_class", "steps", "runs", "time_images", "time_steps", "scale_images",
                                    "scale_steps", "threads", "fid_batch"])
    torch.set_num_threads(args.threads)

    try:
        folder = model_folder(args.model)
    except ValueError as error:
        parser.error(str(error))
    pipe = load_bundled_pipeline(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    pipe.set_progress_bar_config(disable=True)
    labels = [c for _ in range(args.per_class) for c in range(pipe.num_classes)]

    timed_labels = balanced_labels(args.time_images, pipe.num_classes)
    scale_labels = balanced_labels(args.scale_images, pipe.num_classes)
    patch = pipe.transformer.config.patch_size
    bad_sizes = [size for size in args.scale_sizes if size < patch or size % patch]
    if bad_sizes:
        parser.error(f"--scale-sizes must be positive multiples of the patch size ({patch}), got {bad_sizes}")
    if args.real and not args.fid_samples:
        parser.error("--real is the held-out set for FID: it needs --fid-samples > 0")
    real, fid_labels = None, []
    if args.fid_samples:
        try:
            real, fid_labels = real_images(manifest["info"]["config"], args.fid_samples, pipe.num_classes, args.real)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))

    def sample(batch: list[int] = labels, steps: int = args.steps) -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return pipe(batch, num_inference_steps=steps, generator=generator,
                    guidance_scale=args.guidance_scale, output_type="pt").images

    def sample_for_fid(name: str) -> torch.Tensor:
        """The FID images: batch b of fid_labels from seed (seed + 1 + b), the same for every setting."""
        batches = []
        starts = range(0, len(fid_labels), args.fid_batch)
        for b, start in enumerate(tqdm(starts, desc=f"FID samples, {name}", unit="batch")):
            generator = torch.Generator().manual_seed(args.seed + 1 + b)
            batches.append(pipe(fid_labels[start:start + args.fid_batch], num_inference_steps=args.steps,
                                generator=generator, guidance_scale=args.guidance_scale, output_type="pt").images)
        return torch.cat(batches)

    settings = variants(args.steps)
    # timed calls run fewer steps: build each setting for their step count, so that "first 20% steps
    # dense" is 1 of 5 timed steps rather than all of them
    timed_settings, scale_settings = variants(args.time_steps), variants(args.scale_steps)
    load_before = os.getloadavg()[0]
    results, images, fid_images, scale_times = [], {}, {}, {}
    for name, config in settings.items():
        with attention(pipe, config):
            images[name] = sample()
            if fid_labels:
                fid_images[name] = sample_for_fid(name)
        with attention(pipe, timed_settings[name]):
            timing = time_callable(lambda: sample(timed_labels, args.time_steps), warmup=1, runs=args.runs)
        with attention(pipe, scale_settings[name]):
            for size in args.scale_sizes:
                call = lambda: pipe(scale_labels, num_inference_steps=args.scale_steps,  # noqa: E731
                                    generator=torch.Generator().manual_seed(args.seed),
                                    guidance_scale=args.guidance_scale, output_type="pt", image_size=size)
                scale_times[name, size] = time_callable(call, warmup=1, runs=args.runs).median_s
        results.append((name, timing.median_s))
        load_after = os.getloadavg()[0]
        print(f"{name}: {timing.median_s:.3f} s", flush=True)

    fid_real, fid_dense = {}, {}
    if fid_labels:
        extractor = InceptionExtractor("legacy-tf")
        real_features = extractor(real).numpy()
        features = {name: extractor(batch).numpy() for name, batch in tqdm(fid_images.items(), desc="Inception")}
        for name, fake in features.items():
            fid, kid, kid_std = fid_and_kid(fake, real_features)
            fid_real[name] = [fid.format(2), f"{kid:.4f} ± {kid_std:.4f}"]
            fid_dense[name] = "0 (itself)" if name == "dense" else fid_and_kid(fake, features['dense'])[0].format(2)
            print(f"{name}: FID vs real {fid.format(2)}, KID {kid}, FID vs dense {fid_dense[name]}", flush=True)

    dense, dense_s = images["dense"], results[0][1]
    rows = []
    for name, seconds in results:
        quality = ("exact", "exact") if name == "dense" else (f"{psnr(images[name], dense):.2f}",
                                                               f"{ssim(images[name], dense):.4f}")
        fid = [*fid_real[name], fid_dense[name]] if fid_labels else []
        scaled = [f"{scale_times['dense', size] / scale_times[name, size]:.2f}x" for size in args.scale_sizes]
        rows.append([name, f"{seconds:.3f}", f"{dense_s / seconds:.2f}x", *scaled, *quality, *fid, "not measured"])

    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    to_pil = lambda batch: [Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy()) for x in batch]
    grid = image_grid(to_pil(dense), columns=pipe.num_classes)
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(docs / f"{folder.name}_samples.png")
    first_row = slice(0, pipe.num_classes)
    compare = image_grid([im for name in settings for im in to_pil(images[name][first_row])], columns=pipe.num_classes)
    compare.resize((compare.width * 2, compare.height * 2), Image.Resampling.NEAREST).save(
        docs / f"{folder.name}_dense_vs_sparse.png")

    data = manifest["info"]["config"]
    size, tokens = data["image_size"], (data["image_size"] // patch) ** 2
    trained_on = "the generated shapes dataset" if data["data"] == "shapes" else f"`{data['data']}`"
    real_name = f"held-out real images of `{args.real}`" if args.real else "held-out real shapes with the same class counts"
    n = len(fid_labels)
    label_counts = ("labels in the real images' class proportions" if args.real else
                    f"{n // pipe.num_classes}{'+' if n % pipe.num_classes else ''} per class")
    fid_columns = [f"FID vs held-out real ({n})", f"KID vs held-out real ({n})", f"FID vs dense ({n})"] if n else []
    fid_note = (
        f"FID (legacy-tf preprocessing, genaccel.eval): {n} generated images per setting ({label_counts}, "
        f"{args.steps} DDIM steps, guidance {args.guidance_scale}, "
        f"batches of {args.fid_batch} seeded {args.seed + 1}, {args.seed + 2}, ... - the same labels and seeds for "
        f"every setting) against {len(real) if n else 0} {real_name}, and each sparse setting "
        f"against the dense samples. FID from {n} samples is biased upward (2048-d features, few samples) and only "
        f"comparable with FID at the same N; its differences between settings are what this table shows. "
        f"KID (unbiased at any N): mean ± std over 100 subsets of {max(2, min(n, 2000) // 2)}. FID ± its std over "
        "10 bootstrap resamples."
        if n else "FID: not measured in this run (`--fid-samples 0`).")
    body = "\n".join([
        f"Bundled model `{folder.name}` ({manifest['transformer_class']}, {size}x{size} pixels, {tokens} tokens, "
        f"trained on {trained_on}; {manifest['info'].get('steps')} steps in its last phase, see docs/training.md), "
        f"{len(labels)} images ({args.per_class} per class), "
        f"{args.steps} DDIM steps, guidance {args.guidance_scale} (a CFG batch of {2 * len(labels)}), seed {args.seed}. "
        "PSNR/SSIM: sparse-attention images against the dense images from the same seeds. "
        f"Time: one pipeline call of {args.time_images} images and {args.time_steps} DDIM steps (same guidance), "
        f"median of {args.runs} runs after 1 warm-up, dense and sparse in the same process; timed calls use each "
        "setting built for their own step count (dense_steps is 20% of the timed steps). "
        f"Speed-up at larger sizes: the same weights sampling {args.scale_images} image(s) with {args.scale_steps} "
        "DDIM steps at a larger image size, to show where sparse attention starts to pay; these sizes are outside "
        "the training distribution, so only time is reported for them.",
        "",
        f"Device: CPU ({platform.processor() or platform.machine()}, {args.threads} thread(s), {os.cpu_count()} cores; "
        f"1-min load average {load_before:.1f} at the start and {load_after:.1f} after the last timing); "
        f"GPU: not measured. Commit: `{git_commit()}`. Command: `python benchmarks/reference_models.py "
        f"--per-class {args.per_class} --steps {args.steps} --guidance-scale {args.guidance_scale} "
        f"--runs {args.runs} --time-images {args.time_images} --time-steps {args.time_steps} "
        f"--scale-sizes {' '.join(map(str, args.scale_sizes))} --scale-images {args.scale_images} "
        f"--scale-steps {args.scale_steps} "
        f"--threads {args.threads} --seed {args.seed} --fid-samples {args.fid_samples} --fid-batch {args.fid_batch} "
        f"--model {args.model}{f' --real {args.real}' if args.real else ''} --section {args.section}`.",
        "",
        markdown_table(["attention", "CPU time / call (s)", "speed-up",
                        *[f"speed-up at {size}x{size} ({(size // patch) ** 2} tokens)" for size in args.scale_sizes],
                        "PSNR vs dense (dB)", "SSIM vs dense",
                        *fid_columns, "GPU"], rows),
        "",
        fid_note,
        f"Grids: docs/{folder.name}_samples.png (dense), docs/{folder.name}_dense_vs_sparse.png (rows in table order).",
    ])
    update_section(args.out, args.section, body)
    print(body)


if __name__ == "__main__":
    main()
