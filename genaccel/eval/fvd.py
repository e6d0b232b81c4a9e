"""FVD: Fréchet distance between I3D logits of two sets of videos (original FVD / StyleGAN-V protocol).

Each video contributes its first 16 frames, resized to 224x224 with TF1 bilinear (as the original
TF implementation), scaled to [-1, 1]; the 400 Kinetics logits are the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from genaccel.eval.frechet import FeatureStats, GaussianStats, frechet_distance
from genaccel.eval.intervals import frechet_sample_note
from genaccel.eval.i3d import I3D, load_i3d
from genaccel.eval.resize import resize_legacy_tf
from genaccel.eval.videos import first_clip, list_videos, load_video

CLIP_LENGTH = 16
I3D_SIZE = 224
FEATURE_DIM = 400
FVD_MODE = "i3d-16f-224"  # stored in stats files so FID and FVD statistics are never mixed up


class I3DExtractor:
    """(N, T, H, W, 3) uint8 clips -> (N, 400) I3D logits."""

    def __init__(self, *, weights: str | Path | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 8, model: I3D | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = (model if model is not None else load_i3d(weights)).to(self.device).eval()

    @staticmethod
    def preprocess(clips: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 3, T, 224, 224) float in [-1, 1]."""
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips of shape (N, T, H, W, 3), got {clips.dtype} {tuple(clips.shape)}")
        n, t, h, w, _ = clips.shape
        frames = clips.reshape(n * t, h, w, 3).permute(0, 3, 1, 2)
        frames = resize_legacy_tf(frames, I3D_SIZE)
        return (frames / 127.5 - 1).reshape(n, t, 3, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        outputs = []
        for start in range(0, clips.shape[0], self.batch_size):
            batch = self.preprocess(clips[start:start + self.batch_size].to(self.device))
            outputs.append(self.model(batch).float().cpu())
        return torch.cat(outputs) if outputs else torch.zeros(0, FEATURE_DIM)


def stats_of_videos(paths: Sequence[Path], extractor: I3DExtractor, *, keep_features: bool = False) -> FeatureStats:
    """Stream the first 16 frames of each video through I3D into float64 statistics."""
    stats = FeatureStats(FEATURE_DIM, keep_features=keep_features)
    pending: list[np.ndarray] = []
    shape = None
    for path in tqdm(paths, desc="I3D features", unit="video", leave=False, disable=None):
        clip = first_clip(load_video(path), CLIP_LENGTH, path)
        if shape is not None and clip.shape != shape:
            stats.update(extractor(torch.from_numpy(np.stack(pending))))
            pending = []
        shape = clip.shape
        pending.append(clip)
        if len(pending) == extractor.batch_size:
            stats.update(extractor(torch.from_numpy(np.stack(pending))))
            pending = []
    if pending:
        stats.update(extractor(torch.from_numpy(np.stack(pending))))
    return stats


@dataclass
class FvdResult:
    fvd: float
    num_a: int
    num_b: int

    @property
    def note(self) -> str | None:
        """Why this FVD is not comparable with published ones, when it comes from too few videos."""
        return frechet_sample_note("FVD", self.num_a, self.num_b)

    def as_dict(self) -> dict:
        return {"fvd": self.fvd, "num_a": self.num_a, "num_b": self.num_b, "mode": FVD_MODE, "note": self.note}


def _side(source: str | Path, extractor: I3DExtractor | None) -> GaussianStats:
    if Path(source).suffix == ".npz":
        saved = GaussianStats.load(source)
        if saved.mode != FVD_MODE:
            raise ValueError(f"{source} holds {saved.mode!r} statistics, not FVD ({FVD_MODE!r}) ones")
        return saved
    assert extractor is not None
    return GaussianStats.from_features(stats_of_videos(list_videos(source), extractor), FVD_MODE)


def fvd(a: str | Path, b: str | Path, *, batch_size: int = 8, device: torch.device | str = "cpu",
        weights: str | Path | None = None) -> FvdResult:
    """FVD between two folders of videos (or `.npz` statistics of them)."""
    needs_model = not (Path(a).suffix == ".npz" and Path(b).suffix == ".npz")
    extractor = I3DExtractor(weights=weights, device=device, batch_size=batch_size) if needs_model else None
    stats_a, stats_b = _side(a, extractor), _side(b, extractor)
    return FvdResult(fvd=frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma),
                     num_a=stats_a.count, num_b=stats_b.count)
