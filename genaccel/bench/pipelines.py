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
from genaccel.eval.frechet import FeatureStats, frechet_distance
from genaccel.eval.images import load_image, save_image
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


@dataclass
class MethodResult:
    method: str
    count: int
    seconds_per_output: float
    seconds_per_step: float
    speedup: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    fid_vs_dense: float | None = None
    fid_vs_real: float | None = None
    fvd_vs_real: float | None = None
    notes: list[str] = field(default_factory=list)


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


def _image_stats(arrays: list[np.ndarray], extractor) -> FeatureStats:
    stats = FeatureStats(2048)
    for start in range(0, len(arrays), extractor.batch_size):
        stats.update(extractor.arrays(arrays[start:start + extractor.batch_size]))
    return stats


def _fid(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(*a.mean_cov(), *b.mean_cov())


def evaluate(methods: list[Method], items: list[WorkItem], settings: BenchSettings) -> list[MethodResult]:
    """Metrics of every method from the saved outputs (main process)."""
    outputs = {m.slug: [load_output(_find_output(settings.out_dir, m, it.index)) for it in items] for m in methods}
    is_video = outputs[methods[0].slug][0].ndim == 4
    timings = {m.slug: _read_timings(settings.out_dir / m.slug) for m in methods}
    dense = methods[0]
    lpips_score, lpips_reason = lpips_scorer()
    extractor, real_stats, feature_stats = None, None, {}
    if not is_video and (len(items) >= 2 or settings.real):
        from genaccel.eval.fid import InceptionExtractor

        extractor = InceptionExtractor(settings.fid_mode, device=settings.device,
                                       batch_size=settings.feature_batch_size)
        feature_stats = {m.slug: _image_stats(outputs[m.slug], extractor) for m in methods}
    if settings.real:
        real_stats = _real_stats(settings, extractor, is_video)
    results = []
    for method in methods:
        seconds = statistics.median(timings[method.slug][it.index] for it in items)
        result = MethodResult(method.spec, len(items), seconds, seconds / settings.steps)
        result.speedup = statistics.median(timings[dense.slug][it.index] for it in items) / seconds
        pairs = list(zip(outputs[method.slug], outputs[dense.slug]))
        result.psnr = float(np.mean([min(psnr(a, b, method.spec), 100.0) for a, b in pairs]))
        result.ssim = float(np.mean([ssim(a, b, method.spec) for a, b in pairs]))
        if lpips_score is not None:
            result.lpips = float(np.mean([lpips_score(a, b) for a, b in pairs]))
        elif lpips_reason:
            result.notes.append(lpips_reason)
        if feature_stats and len(items) >= 2 and not method.is_dense:
            result.fid_vs_dense = _fid(feature_stats[method.slug], feature_stats[dense.slug])
        if real_stats is not None and is_video:
            result.fvd_vs_real = _fvd_vs(real_stats, outputs[method.slug], settings)
        elif real_stats is not None:
            mu, sigma = real_stats
            result.fid_vs_real = frechet_distance(*feature_stats[method.slug].mean_cov(), mu, sigma)
        results.append(result)
    return results


def _real_stats(settings: BenchSettings, extractor, is_video: bool) -> tuple[np.ndarray, np.ndarray]:
    from genaccel.eval.frechet import GaussianStats

    real = Path(settings.real)
    if is_video:
        from genaccel.eval.fvd import FVD_MODE, I3DExtractor, stats_of_videos
        from genaccel.eval.videos import list_videos

        if real.suffix == ".npz":
            saved = GaussianStats.load(real)
            if saved.mode != FVD_MODE:
                raise ValueError(f"{real} holds {saved.mode!r} statistics; FVD needs {FVD_MODE!r} ones")
            return saved.mu, saved.sigma
        return stats_of_videos(list_videos(real), I3DExtractor(device=settings.device)).mean_cov()
    if real.suffix == ".npz":
        saved = GaussianStats.load(real)
        if saved.mode != settings.fid_mode:
            raise ValueError(f"{real} was computed with mode {saved.mode!r}, the benchmark uses "
                             f"{settings.fid_mode!r}; statistics of different modes are not comparable")
        return saved.mu, saved.sigma
    from genaccel.eval.fid import stats_of_folder

    return stats_of_folder(real, extractor).mean_cov()


def _fvd_vs(real: tuple[np.ndarray, np.ndarray], videos: list[np.ndarray], settings: BenchSettings) -> float:
    from genaccel.eval.fvd import CLIP_LENGTH, FEATURE_DIM, I3DExtractor
    from genaccel.eval.videos import first_clip

    extractor = I3DExtractor(device=settings.device)
    stats = FeatureStats(FEATURE_DIM)
    for index, video in enumerate(videos):
        clip = first_clip(video, CLIP_LENGTH, f"output {index}")
        stats.update(extractor(torch.from_numpy(clip[None])))
    return frechet_distance(*stats.mean_cov(), *real)
