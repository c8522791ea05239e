"""Gaussianity tests with Benjamini-Hochberg control across series."""

import numpy as np
import pytest
import torch
from scipy import stats

from sgdexp.noise.generators import symmetric_alpha_stable
from sgdexp.stats import anderson_darling_normal, gaussianity_tests


def test_gaussian_data_fraction_near_zero():
    x = np.random.default_rng(0).standard_normal((1000, 300))
    res = gaussianity_tests(x)
    # under the global null BH gives P(any rejection) <= 0.05, so the fraction is ~0
    assert res.fraction_rejected <= 0.01
    assert res.fraction_rejected_anderson <= 0.01
    assert res.normaltest_p.shape == (300,) and res.shapiro_p is None
    # uniform p-values under the null (KS at a generous level)
    assert stats.kstest(res.normaltest_p, "uniform").pvalue > 1e-3


def test_heavy_tailed_data_fraction_near_one():
    x = symmetric_alpha_stable(1.2, (1000, 300), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = gaussianity_tests(x, shapiro=True)
    assert res.fraction_rejected >= 0.97
    assert res.fraction_rejected_anderson >= 0.97
    assert np.mean(res.shapiro_p < 0.05) >= 0.97


def test_matches_scipy():
    x = np.random.default_rng(2).standard_normal((3, 200)) ** 3  # skewed, dim=1
    res = gaussianity_tests(x, dim=1)
    np.testing.assert_allclose(res.normaltest_p, stats.normaltest(x, axis=1).pvalue)
    A, p = anderson_darling_normal(x)
    n = x.shape[1]
    ref = [stats.anderson(r, method="interpolate").statistic * (1 + 0.75 / n + 2.25 / n ** 2) for r in x]
    np.testing.assert_allclose(A, ref, rtol=1e-10)
    np.testing.assert_allclose(res.anderson_stat, A)
    assert np.all(p < 0.01)


def test_anderson_pvalue_critical_value():
    # D'Agostino & Stephens: adjusted A*^2 = 0.752 is the 5% point
    X = np.random.default_rng(3).standard_normal((4000, 100))
    A, p = anderson_darling_normal(X)
    assert np.mean(A > 0.752) == pytest.approx(0.05, abs=0.015)  # binomial SD 0.0035
    assert np.mean(p < 0.05) == pytest.approx(0.05, abs=0.015)


def test_constant_series_and_short():
    x = np.random.default_rng(4).standard_normal((50, 3))
    x[:, 2] = 1.0
    res = gaussianity_tests(x)
    assert np.isnan(res.normaltest_p[2]) and not res.rejected[2]
    with pytest.raises(ValueError):
        gaussianity_tests(np.ones((5, 2)))
