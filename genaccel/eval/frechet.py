"""Gaussian feature statistics (streamed in float64) and the Fréchet distance between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0).

    LAPACK's MRRR driver (`evr`) is the fastest of scipy's eigh drivers for 2048x2048 covariances.
    """
    eigenvalues, eigenvectors = scipy.linalg.eigh(matrix, driver="evr")
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of the
    symmetric matrix sqrt(S1) S2 sqrt(S1): eigh on symmetric matrices is faster and better
    conditioned than scipy's general sqrtm, and never returns a complex result.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of the same length, got {mu1.shape} and {mu2.shape}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"covariances must be ({dim}, {dim}), got {sigma1.shape} and {sigma2.shape}")
    root1 = _sqrt_psd((sigma1 + sigma1.T) / 2)
    middle = root1 @ sigma2 @ root1
    eigenvalues = scipy.linalg.eigh((middle + middle.T) / 2, eigvals_only=True, driver="evr")
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


@dataclass
class FeatureStats:
    """Running sum and sum of outer products of feature vectors, in float64.

    `features` keeps the raw vectors too when `keep_features` is set (KID needs them).
    """

    dim: int
    keep_features: bool = False
    count: int = 0
    total: np.ndarray = field(init=False)
    outer: np.ndarray = field(init=False)
    kept: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.total = np.zeros(self.dim, dtype=np.float64)
        self.outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        batch = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) \
            else np.asarray(features, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {batch.shape}")
        self.count += batch.shape[0]
        self.total += batch.sum(axis=0)
        self.outer += batch.T @ batch
        if self.keep_features:
            self.kept.append(batch)

    def merge(self, other: "FeatureStats") -> None:
        """Add another accumulator's samples (e.g. from another process)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {other.dim}-d statistics into {self.dim}-d ones")
        self.count += other.count
        self.total += other.total
        self.outer += other.outer
        self.kept.extend(other.kept)

    @property
    def features(self) -> np.ndarray:
        if not self.keep_features:
            raise ValueError("raw features were not kept; create FeatureStats(keep_features=True)")
        return np.concatenate(self.kept) if self.kept else np.zeros((0, self.dim))

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample mean and unbiased covariance (divides by count - 1)."""
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got {self.count}")
        mu = self.total / self.count
        sigma = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return mu, sigma


@dataclass(frozen=True)
class GaussianStats:
    """Saved statistics of one image or video set: what `genaccel fid-stats` writes."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    mode: str  # preprocessing mode; statistics of different modes are never compared

    @classmethod
    def from_features(cls, stats: FeatureStats, mode: str) -> "GaussianStats":
        mu, sigma = stats.mean_cov()
        return cls(mu=mu, sigma=sigma, count=stats.count, mode=mode)

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as file:  # a file handle keeps numpy from appending `.npz`
            np.savez(file, mu=self.mu, sigma=self.sigma, count=np.int64(self.count), mode=np.str_(self.mode))

    @classmethod
    def load(cls, path: str | Path) -> "GaussianStats":
        """Load a stats `.npz` (arrays only, no pickles); ValueError names what is wrong."""
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"mu", "sigma", "count", "mode"} - set(data.files)
                if missing:
                    raise ValueError(f"{path} is not a genaccel stats file: missing {sorted(missing)} "
                                     "(expected mu, sigma, count, mode as written by `genaccel fid-stats`)")
                stats = cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64),
                            count=int(data["count"]), mode=str(data["mode"]))
        except (OSError, EOFError) as error:
            raise ValueError(f"cannot read stats file {path}: {error}") from None
        except ValueError as error:
            if str(path) in str(error):
                raise
            raise ValueError(f"cannot read stats file {path}: {error}") from None
        dim = stats.mu.shape[0] if stats.mu.ndim == 1 else -1
        if dim < 1 or stats.sigma.shape != (dim, dim):
            raise ValueError(f"{path}: mu has shape {stats.mu.shape} and sigma {stats.sigma.shape}; "
                             "expected (D,) and (D, D)")
        return stats


def stats_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two saved statistics of the same preprocessing mode."""
    if a.mode != b.mode:
        raise ValueError(f"statistics computed with different preprocessing modes ({a.mode!r} vs {b.mode!r}) "
                         "are not comparable; recompute one side with the other's mode")
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
