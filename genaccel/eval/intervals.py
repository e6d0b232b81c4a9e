"""Intervals for quality figures, so a reader can see whether two methods differ, and the sample-size
rule for Frechet distances.

- per-output metrics (PSNR, SSIM, LPIPS): the mean with a 95% Student-t interval;
- FID / FVD: the distance on all samples with the std of the distance over bootstrap resamples
  (each side's samples drawn with replacement, seeded); a resample sees about 63% distinct samples,
  so the spread is that of the estimator at this N, bias included;
- FID needs about 2,000 samples before it settles (2048-d features; Chong & Forsyth 2020, and the
  50k of published numbers): below that `frechet_sample_note` says the value is biased upward and
  only comparable at the same N, and KID (unbiased at any N) should be read beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genaccel.eval.frechet import frechet_distance

FID_MIN_SAMPLES = 2000
DEFAULT_RESAMPLES = 10


@dataclass(frozen=True)
class Estimate:
    """A figure with its spread: `spread` is a 95% half-width (`kind` "95% CI") or a std."""

    value: float
    spread: float | None
    kind: str

    def format(self, digits: int = 2) -> str:
        if self.spread is None or not math.isfinite(self.spread):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} ± {self.spread:.{digits}f}"


def mean_with_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean of `values` and the half-width of its Student-t interval (None for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("no values to average")
    if array.size == 1:
        return Estimate(float(array[0]), None, f"{level:.0%} CI")
    from scipy import stats

    half = stats.t.ppf(0.5 + level / 2, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
    return Estimate(float(array.mean()), float(half), f"{level:.0%} CI")


def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def bootstrap_frechet(a: np.ndarray, b: np.ndarray | tuple[np.ndarray, np.ndarray], *,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """Frechet distance between feature sets `a` (N, D) and `b` ((M, D) features, or saved (mu, sigma),
    which is held fixed), with the std over `resamples` bootstrap resamples (0: no spread)."""
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {a.shape}")
    fixed = isinstance(b, tuple)
    if not fixed and (b.ndim != 2 or b.shape[0] < 2 or b.shape[1] != a.shape[1]):
        raise ValueError(f"feature sets must both be (N >= 2, {a.shape[1]}), got {a.shape} and {b.shape}")
    reference = b if fixed else _gaussian(b)
    value = frechet_distance(*_gaussian(a), *reference)
    if resamples <= 0:
        return Estimate(value, None, "bootstrap std")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        a_star = a[rng.integers(0, a.shape[0], a.shape[0])]
        b_star = reference if fixed else _gaussian(b[rng.integers(0, b.shape[0], b.shape[0])])
        draws.append(frechet_distance(*_gaussian(a_star), *b_star))
    return Estimate(value, float(np.std(draws, ddof=1)) if resamples > 1 else None, "bootstrap std")


def frechet_sample_note(metric: str, *counts: int) -> str | None:
    """A note when a Frechet distance (FID / FVD) comes from fewer than FID_MIN_SAMPLES on a side."""
    n = min(counts)
    if n >= FID_MIN_SAMPLES:
        return None
    return (f"{metric} from {n:,} samples (< {FID_MIN_SAMPLES:,}) is biased upward and comparable only with "
            f"{metric} at the same N, not with published numbers" + ("; read KID beside it" if metric == "FID"
                                                                    else ""))
