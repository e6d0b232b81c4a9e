"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, averaged over subsets."""

from __future__ import annotations

import numpy as np
import torch


def polynomial_mmd(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                   coef: float = 1.0) -> torch.Tensor:
    """Unbiased MMD^2 between two equal-size samples under k(a, b) = (gamma a.b + coef)^degree."""
    if x.shape != y.shape:
        raise ValueError(f"subsets must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    m = x.shape[0]
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def kernel_inception_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *,
                              subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef: float = 1.0,
                              generator: torch.Generator | None = None) -> tuple[float, float]:
    """(mean, population std) of polynomial MMD^2 over `subsets` random subsets of each side.

    Subsets are drawn with `torch.randperm` (real first, then fake, per subset) from `generator`
    (the global RNG when None), in float32 like torchmetrics' KernelInceptionDistance.
    """
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    for name, side in (("real", real_t), ("fake", fake_t)):
        if side.shape[0] < subset_size:
            raise ValueError(f"KID subset_size={subset_size} exceeds the {side.shape[0]} {name} samples; "
                             "lower --kid-subset-size or add samples")
    if subset_size < 2:
        raise ValueError(f"KID subset_size must be >= 2, got {subset_size}")
    scores = []
    for _ in range(subsets):
        real_subset = real_t[torch.randperm(real_t.shape[0], generator=generator)[:subset_size]]
        fake_subset = fake_t[torch.randperm(fake_t.shape[0], generator=generator)[:subset_size]]
        scores.append(polynomial_mmd(real_subset, fake_subset, degree, gamma, coef))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False))
