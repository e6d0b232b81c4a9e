"""PSNR / SSIM against the dense output: exact values, shape checks, the LPIPS message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genaccel.eval.fidelity import lpips_scorer, psnr, ssim


def test_psnr_of_a_constant_offset_is_exact() -> None:
    a = np.zeros((16, 16, 3), dtype=np.uint8)
    b = np.full((16, 16, 3), 26, dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(-20 * math.log10(26 / 255), rel=1e-6)
    assert psnr(a, a) == math.inf


def test_ssim_of_constant_images_follows_the_luminance_term() -> None:
    a = np.full((32, 32, 3), 51, dtype=np.uint8)
    b = np.full((32, 32, 3), 102, dtype=np.uint8)
    mu_a, mu_b, c1 = 51 / 255, 102 / 255, 0.01 ** 2  # no variance: SSIM is the luminance term alone
    assert ssim(a, b) == pytest.approx((2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1), rel=1e-5)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(noise, noise) == pytest.approx(1.0, abs=1e-6)


def test_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="output shapes differ"):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), "proxy:2x2")


def test_lpips_reports_why_it_is_not_computed() -> None:
    score, reason = lpips_scorer()
    assert (score is None) == (reason is not None)
    if reason is not None:
        assert reason.startswith("LPIPS not computed")
