"""`genaccel bench`: the same prompts and seeds through dense and sparse-attention pipelines.

For every method: generate (skipping outputs a previous run finished), time each output after a
warm-up, then measure speed-up, fidelity to the dense output (PSNR / SSIM / LPIPS where possible /
FID between the two sets) and, given `real`, FID (images) or FVD (videos) against real data.
Under `accelerate launch` the (prompt, seed) items are sharded over processes and the timings
gathered; the main process computes metrics and writes the report.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import genaccel
from genaccel.eval.distributed import gather_objects, is_main_process, shard, wait_for_everyone
from genaccel.eval.fidelity import lpips_scorer, psnr, ssim
from genaccel.eval.frechet import FeatureStats
from genaccel.eval.images import load_image, save_image
from genaccel.eval.intervals import (DEFAULT_RESAMPLES, Estimate, bootstrap_frechet,
                                     frechet_sample_note, mean_with_interval)
from genaccel.eval.kid import kernel_inception_distance
from genaccel.eval.timing import timed_call
from genaccel.pipelines.loading import generate
from genaccel.pipelines.methods import Method

TIMINGS_FILE = "timings.json"


@dataclass(frozen=True)
class WorkItem:
    index: int
    condition: str | int  # text prompt or class id
    seed: int


@dataclass
class BenchSettings:
    out_dir: Path
    steps: int
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    device: str = "cpu"
    real: str | None = None  # image / video folder or .npz statistics
    fid_mode: str = "legacy-tf"
    feature_batch_size: int = 50
    command: str = ""
    model: str = ""
    resamples: int = DEFAULT_RESAMPLES  # bootstrap resamples for FID / FVD intervals (0: none)


@dataclass
class MethodResult:
    """One method's figures; each `*_spread` is the interval of the figure before it: a 95% t-interval
    half-width for the per-output means (PSNR, SSIM, LPIPS), a bootstrap std for FID / FVD and the
    subset std for KID (`genaccel.eval.intervals`)."""

    method: str
    count: int
    seconds_per_output: float
    seconds_per_step: float
    speedup: float | None = None
    psnr: float | None = None
    psnr_spread: float | None = None
    ssim: float | None = None
    ssim_spread: float | None = None
    lpips: float | None = None
    lpips_spread: float | None = None
    fid_vs_dense: float | None = None
    fid_vs_dense_spread: float | None = None
    fid_vs_real: float | None = None
    fid_vs_real_spread: float | None = None
    kid_vs_real: float | None = None
    kid_vs_real_spread: float | None = None
    fvd_vs_real: float | None = None
    fvd_vs_real_spread: float | None = None
    notes: list[str] = field(default_factory=list)

    def set(self, name: str, estimate: Estimate) -> None:
        setattr(self, name, estimate.value)
        setattr(self, f"{name}_spread", estimate.spread)


def output_path(out_dir: Path, method: Method, index: int, video: bool) -> Path:
    return out_dir / method.slug / f"{index:05d}.{'npy' if video else 'png'}"


def _find_output(out_dir: Path, method: Method, index: int) -> Path | None:
    for video in (False, True):
        path = output_path(out_dir, method, index, video)
        if path.exists():
            return path
    return None


def load_output(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False) if path.suffix == ".npy" else load_image(path)


def _save_output(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 4:  # video: lossless frames for FVD / PSNR
        partial = path.with_suffix(".partial.npy")
        np.save(partial, array)
        partial.replace(path)
    else:
        save_image(array, path)


def _read_timings(folder: Path) -> dict[int, float]:
    path = folder / TIMINGS_FILE
    return {int(k): float(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def generate_method(pipe, method: Method, items: list[WorkItem], settings: BenchSettings) -> None:
    """Generate this process's missing outputs of one method and record their timings."""
    folder = settings.out_dir / method.slug
    timings = _read_timings(folder)
    todo = [item for item in shard(items)
            if item.index not in timings or _find_output(settings.out_dir, method, item.index) is None]
    new_timings: dict[int, float] = {}
    if todo:
        if method.config is not None:
            genaccel.apply(pipe, method.config)
        try:
            def run(item: WorkItem) -> np.ndarray:
                return generate(pipe, item.condition, item.seed, steps=settings.steps,
                                guidance_scale=settings.guidance_scale, height=settings.height, width=settings.width)

            run(todo[0])  # warm-up: first-call allocations and kernel selection are not timed
            for item in tqdm(todo, desc=f"generate {method.spec}", unit="output", disable=None):
                array, seconds = timed_call(lambda: run(item), device=settings.device)
                _save_output(array, output_path(settings.out_dir, method, item.index, array.ndim == 4))
                new_timings[item.index] = seconds
        finally:
            if method.config is not None:
                genaccel.remove(pipe)
    gathered = gather_objects(list(new_timings.items()))
    if is_main_process():
        timings.update(dict(gathered))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TIMINGS_FILE).write_text(json.dumps({str(k): v for k, v in sorted(timings.items())}, indent=1))
    wait_for_everyone()


def _image_features(arrays: list[np.ndarray], extractor) -> np.ndarray:
    stats = FeatureStats(2048, keep_features=True)
    for start in range(0, len(arrays), extractor.batch_size):
        stats.update(extractor.arrays(arrays[start:start + extractor.batch_size]))
    return stats.features


def _video_features(videos: list[np.ndarray], settings: BenchSettings) -> np.ndarray:
    from genaccel.eval.fvd import CLIP_LENGTH, FEATURE_DIM, I3DExtractor
    from genaccel.eval.videos import first_clip

    extractor = I3DExtractor(device=settings.device)
    stats = FeatureStats(FEATURE_DIM, keep_features=True)
    for index, video in enumerate(videos):
        stats.update(extractor(torch.from_numpy(first_clip(video, CLIP_LENGTH, f"output {index}")[None])))
    return stats.features


def _kid(real: np.ndarray, fake: np.ndarray) -> Estimate:
    """KID, mean and std over 100 seeded subsets of half the smaller side (at most 1,000)."""
    size = max(2, min(len(real), len(fake), 2 * 1000) // 2)
    mean, std = kernel_inception_distance(real, fake, subset_size=size, generator=torch.Generator().manual_seed(0))
    return Estimate(mean, std, "subset std")


def evaluate(methods: list[Method], items: list[WorkItem], settings: BenchSettings) -> list[MethodResult]:
    """Metrics of every method from the saved outputs (main process), each with its interval."""
    outputs = {m.slug: [load_output(_find_output(settings.out_dir, m, it.index)) for it in items] for m in methods}
    is_video = outputs[methods[0].slug][0].ndim == 4
    timings = {m.slug: _read_timings(settings.out_dir / m.slug) for m in methods}
    dense = methods[0]
    lpips_score, lpips_reason = lpips_scorer()
    extractor, features = None, {}
    if not is_video and (len(items) >= 2 or settings.real):
        from genaccel.eval.fid import InceptionExtractor

        extractor = InceptionExtractor(settings.fid_mode, device=settings.device,
                                       batch_size=settings.feature_batch_size)
        features = {m.slug: _image_features(outputs[m.slug], extractor) for m in methods}
    elif is_video and settings.real:
        features = {m.slug: _video_features(outputs[m.slug], settings) for m in methods}
    real, real_count = _real_features(settings, extractor, is_video) if settings.real else (None, 0)
    metric = "FVD" if is_video else "FID"
    results = []
    for method in methods:
        seconds = statistics.median(timings[method.slug][it.index] for it in items)
        result = MethodResult(method.spec, len(items), seconds, seconds / settings.steps)
        result.speedup = statistics.median(timings[dense.slug][it.index] for it in items) / seconds
        pairs = list(zip(outputs[method.slug], outputs[dense.slug]))
        result.set("psnr", mean_with_interval([min(psnr(a, b, method.spec), 100.0) for a, b in pairs]))
        result.set("ssim", mean_with_interval([ssim(a, b, method.spec) for a, b in pairs]))
        if lpips_score is not None:
            result.set("lpips", mean_with_interval([lpips_score(a, b) for a, b in pairs]))
        elif lpips_reason:
            result.notes.append(lpips_reason)
        if not is_video and features and len(items) >= 2 and not method.is_dense:
            result.set("fid_vs_dense", bootstrap_frechet(features[method.slug], features[dense.slug],
                                                         resamples=settings.resamples))
            note = frechet_sample_note("FID", len(items))
            if note:
                result.notes.append(f"FID vs dense: {note}")
        if real is not None:
            fake = features[method.slug]
            result.set(f"{metric.lower()}_vs_real",
                       bootstrap_frechet(fake, real, resamples=settings.resamples, seed=1))
            note = frechet_sample_note(metric, len(fake), real_count)
            if note:
                result.notes.append(f"{metric} vs real: {note}")
            if not is_video and isinstance(real, np.ndarray):
                result.set("kid_vs_real", _kid(real, fake))
            elif not is_video:
                result.notes.append("KID vs real needs a folder of real images (a .npz holds only mean and "
                                    "covariance)")
        results.append(result)
    return results


def _real_features(settings: BenchSettings, extractor, is_video: bool
                   ) -> tuple[np.ndarray | tuple[np.ndarray, np.ndarray], int]:
    """The real side and its sample count: its features (from a folder), or its saved (mu, sigma) (.npz)."""
    from genaccel.eval.frechet import GaussianStats

    real = Path(settings.real)
    if is_video:
        from genaccel.eval.fvd import FVD_MODE, I3DExtractor, stats_of_videos
        from genaccel.eval.videos import list_videos

        if real.suffix == ".npz":
            saved = GaussianStats.load(real)
            if saved.mode != FVD_MODE:
                raise ValueError(f"{real} holds {saved.mode!r} statistics; FVD needs {FVD_MODE!r} ones")
            return (saved.mu, saved.sigma), saved.count
        features = stats_of_videos(list_videos(real), I3DExtractor(device=settings.device), keep_features=True).features
        return features, len(features)
    if real.suffix == ".npz":
        saved = GaussianStats.load(real)
        if saved.mode != settings.fid_mode:
            raise ValueError(f"{real} was computed with mode {saved.mode!r}, the benchmark uses "
                             f"{settings.fid_mode!r}; statistics of different modes are not comparable")
        return (saved.mu, saved.sigma), saved.count
    from genaccel.eval.fid import stats_of_folder

    features = stats_of_folder(real, extractor, keep_features=True).features
    return features, len(features)
