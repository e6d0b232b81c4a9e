"""FID (and KID) between image folders, saved statistics or in-memory images.

Pipeline: decode -> uint8 (floats rounded) -> resize to 299 (`legacy-tf` or `clean`) -> (x-128)/128
-> our Inception -> 2048-d pool3 features -> float64 running mean/covariance -> Fréchet distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from genaccel.eval.distributed import gather_stats, shard
from genaccel.eval.frechet import FeatureStats, GaussianStats, frechet_distance
from genaccel.eval.images import list_images, load_image
from genaccel.eval.inception import InceptionV3Features, load_inception
from genaccel.eval.intervals import frechet_sample_note
from genaccel.eval.kid import kernel_inception_distance
from genaccel.eval.resize import check_mode, preprocess

FEATURE_DIM = 2048


class InceptionExtractor:
    """Images of any size -> 2048-d Inception features, with one preprocessing mode."""

    def __init__(self, mode: str = "legacy-tf", *, weights: str | Path | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 50,
                 model: InceptionV3Features | None = None) -> None:
        self.mode = check_mode(mode)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        model = model if model is not None else load_inception(weights)
        # channels_last roughly halves CPU inference time for this conv net
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 or [0, 1] float images -> (N, 2048) float32 features on the CPU."""
        outputs = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = preprocess(images[start:start + self.batch_size].to(self.device), self.mode)
            outputs.append(self.model(batch.contiguous(memory_format=torch.channels_last)).float().cpu())
        return torch.cat(outputs) if outputs else torch.zeros(0, FEATURE_DIM)

    def arrays(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """Features of (H, W, 3) uint8 arrays; runs of equal size are batched together."""
        outputs, start = [], 0
        while start < len(arrays):
            end = start + 1
            while end < len(arrays) and arrays[end].shape == arrays[start].shape:
                end += 1
            batch = torch.from_numpy(np.stack(arrays[start:end])).permute(0, 3, 1, 2)
            outputs.append(self(batch))
            start = end
        return torch.cat(outputs) if outputs else torch.zeros(0, FEATURE_DIM)


def stats_of_arrays(arrays: Iterable[np.ndarray], extractor: InceptionExtractor, *, total: int | None = None,
                    keep_features: bool = False, desc: str = "Inception features") -> FeatureStats:
    """Stream (H, W, 3) uint8 images through the extractor into float64 statistics."""
    stats = FeatureStats(FEATURE_DIM, keep_features=keep_features)
    pending: list[np.ndarray] = []
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=None) as bar:  # None: only on a TTY
        for array in arrays:
            pending.append(array)
            if len(pending) == extractor.batch_size:
                stats.update(extractor.arrays(pending))
                bar.update(len(pending))
                pending = []
        if pending:
            stats.update(extractor.arrays(pending))
            bar.update(len(pending))
    return stats


def stats_of_paths(paths: Sequence[Path], extractor: InceptionExtractor, *, keep_features: bool = False,
                   desc: str = "Inception features") -> FeatureStats:
    return stats_of_arrays((load_image(p) for p in paths), extractor, total=len(paths),
                           keep_features=keep_features, desc=desc)


def stats_of_folder(folder: str | Path, extractor: InceptionExtractor, *, keep_features: bool = False) -> FeatureStats:
    """Statistics of every image in `folder`; under `accelerate launch` each process reads its shard."""
    paths = list_images(folder)
    local = stats_of_paths(shard(paths), extractor, keep_features=keep_features, desc=f"features {folder}")
    return gather_stats(local)


def is_stats_file(path: str | Path) -> bool:
    return Path(path).suffix == ".npz"


@dataclass
class FidResult:
    fid: float
    num_a: int
    num_b: int
    mode: str
    kid: tuple[float, float] | None = None
    kid_subset_size: int | None = None

    @property
    def note(self) -> str | None:
        """Why this FID is not comparable with published ones, when it comes from too few samples."""
        return frechet_sample_note("FID", self.num_a, self.num_b)

    def as_dict(self) -> dict:
        out = {"fid": self.fid, "num_a": self.num_a, "num_b": self.num_b, "mode": self.mode, "note": self.note}
        if self.kid is not None:
            out["kid_mean"], out["kid_std"] = self.kid
            out["kid_subset_size"] = self.kid_subset_size
        return out


def _side(source: str | Path, mode: str, extractor: InceptionExtractor | None,
          keep_features: bool) -> tuple[GaussianStats, FeatureStats | None]:
    if is_stats_file(source):
        if keep_features:
            raise ValueError(f"KID needs raw features; {source} is a statistics file. Pass an image folder")
        saved = GaussianStats.load(source)
        if saved.mode != mode:
            raise ValueError(f"{source} was computed with preprocessing mode {saved.mode!r} but {mode!r} was "
                             f"requested; statistics of different modes are not comparable (use --mode {saved.mode})")
        return saved, None
    assert extractor is not None
    stats = stats_of_folder(source, extractor, keep_features=keep_features)
    return GaussianStats.from_features(stats, mode), stats


def fid(a: str | Path, b: str | Path, *, mode: str = "legacy-tf", kid: bool = False,
        kid_subsets: int = 100, kid_subset_size: int = 1000, batch_size: int = 50,
        device: torch.device | str = "cpu", weights: str | Path | None = None) -> FidResult:
    """FID between two sources, each an image folder or a `.npz` from `genaccel fid-stats`."""
    check_mode(mode)
    needs_model = not (is_stats_file(a) and is_stats_file(b))
    extractor = InceptionExtractor(mode, weights=weights, device=device, batch_size=batch_size) if needs_model else None
    stats_a, raw_a = _side(a, mode, extractor, kid)
    stats_b, raw_b = _side(b, mode, extractor, kid)
    distance = frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)
    kid_value, size = None, None
    if kid:
        # like clean-fid, subsets never exceed the smaller side; the size used is reported
        size = min(kid_subset_size, raw_a.count, raw_b.count)
        kid_value = kernel_inception_distance(raw_a.features, raw_b.features, subsets=kid_subsets, subset_size=size)
    return FidResult(fid=distance, num_a=stats_a.count, num_b=stats_b.count, mode=mode, kid=kid_value,
                     kid_subset_size=size)
