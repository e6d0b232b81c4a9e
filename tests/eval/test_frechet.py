"""Fréchet distance against scipy's sqrtm, streaming statistics, saved-stats round trips."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from genaccel.eval import frechet_distance
from genaccel.eval.frechet import FeatureStats, GaussianStats, stats_distance


def _reference_fid(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.normal(size=(dim, 2 * dim))
    return a @ a.T / (2 * dim) + 1e-3 * np.eye(dim)


@pytest.mark.parametrize("dim", [2, 16, 128])
def test_frechet_distance_matches_scipy_sqrtm(dim: int) -> None:
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = _random_spd(rng, dim), _random_spd(rng, dim)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert ours == pytest.approx(_reference_fid(mu1, sigma1, mu2, sigma2), rel=1e-9, abs=1e-9)


def test_frechet_distance_of_identical_gaussians_is_zero_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    mu, sigma, other = rng.normal(size=32), _random_spd(rng, 32), _random_spd(rng, 32)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(mu, sigma, mu, other) == pytest.approx(frechet_distance(mu, other, mu, sigma), rel=1e-10)


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_stats_equal_numpy_mean_and_covariance() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(101, 7)) * 3 + 5
    stats, other = FeatureStats(7, keep_features=True), FeatureStats(7, keep_features=True)
    for chunk in np.array_split(features[:60], 4):
        stats.update(chunk)
    other.update(features[60:])
    stats.merge(other)
    mu, sigma = stats.mean_cov()
    np.testing.assert_allclose(mu, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-10)
    np.testing.assert_array_equal(stats.features, features)
    assert stats.count == 101


def test_stats_round_trip_and_mode_mismatch(tmp_path) -> None:
    rng = np.random.default_rng(2)
    stats = FeatureStats(5)
    stats.update(rng.normal(size=(20, 5)))
    saved = GaussianStats.from_features(stats, "legacy-tf")
    saved.save(tmp_path / "a.npz")
    loaded = GaussianStats.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded.sigma, saved.sigma)
    assert (loaded.count, loaded.mode) == (20, "legacy-tf")
    assert stats_distance(saved, loaded) == pytest.approx(0.0, abs=1e-10)
    clean = GaussianStats(saved.mu, saved.sigma, saved.count, "clean")
    with pytest.raises(ValueError, match="different preprocessing modes"):
        stats_distance(saved, clean)


def test_loading_a_bad_stats_file_names_it(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        GaussianStats.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        GaussianStats.load(tmp_path / "other.npz")
