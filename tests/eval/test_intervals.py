"""Intervals of quality figures (genaccel.eval.intervals)."""

import numpy as np
import pytest
from scipy import stats

from genaccel.eval.frechet import FeatureStats, frechet_distance
from genaccel.eval.intervals import (FID_MIN_SAMPLES, Estimate, bootstrap_frechet, frechet_sample_note,
                                     mean_with_interval)


def test_mean_interval_is_the_student_t_interval():
    values = [30.1, 31.5, 29.8, 33.0, 30.6]
    estimate = mean_with_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert estimate.value == pytest.approx(np.mean(values))
    assert estimate.spread == pytest.approx((high - low) / 2)
    assert mean_with_interval([4.0]) == Estimate(4.0, None, "95% CI")
    with pytest.raises(ValueError, match="no values"):
        mean_with_interval([])


def test_bootstrap_frechet_value_is_the_full_sample_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(0.3, 1.0, size=(150, 8))
    sa, sb = FeatureStats(8), FeatureStats(8)
    sa.update(a)
    sb.update(b)
    expected = frechet_distance(*sa.mean_cov(), *sb.mean_cov())
    estimate = bootstrap_frechet(a, b, resamples=8, seed=3)
    assert estimate.value == pytest.approx(expected, rel=1e-9)
    assert estimate.spread > 0 and estimate == bootstrap_frechet(a, b, resamples=8, seed=3)  # seeded
    assert bootstrap_frechet(a, b, resamples=0).spread is None
    fixed = bootstrap_frechet(a, sb.mean_cov(), resamples=8)  # saved statistics stay fixed
    assert fixed.value == pytest.approx(expected, rel=1e-9) and 0 < fixed.spread
    assert bootstrap_frechet(a, a, resamples=0).value == pytest.approx(0.0, abs=1e-8)


def test_spread_shrinks_with_more_samples():
    rng = np.random.default_rng(1)
    small = bootstrap_frechet(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), resamples=20)
    large = bootstrap_frechet(rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4)), resamples=20)
    assert large.spread < small.spread / 3


def test_bad_feature_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(N >= 2, D\)"):
        bootstrap_frechet(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="must both be"):
        bootstrap_frechet(np.zeros((5, 3)), np.zeros((5, 4)))


def test_sample_note_below_two_thousand():
    assert frechet_sample_note("FID", FID_MIN_SAMPLES, 5000) is None
    note = frechet_sample_note("FID", 512, 5000)
    assert "512" in note and "biased upward" in note and "KID" in note
    assert "KID" not in frechet_sample_note("FVD", 100, 100)


def test_estimate_formats_with_its_spread():
    assert Estimate(12.3456, 0.789, "bootstrap std").format(2) == "12.35 ± 0.79"
    assert Estimate(12.3456, None, "bootstrap std").format(1) == "12.3"
