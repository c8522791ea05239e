"""line_fit on exact and noisy lines."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sgdexp.stats.fits import line_fit


def test_exact_line():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = line_fit(x, 3.0 - 0.5 * x)
    assert fit.slope == pytest.approx(-0.5) and fit.intercept == pytest.approx(3.0)
    assert fit.r2 == pytest.approx(1.0) and fit.n == 4 and fit.slope_se == pytest.approx(0.0, abs=1e-12)


def test_noisy_line_recovers_slope_within_its_standard_error():
    """y = 2x + 1 + N(0, 0.5²) at 50 points on [0, 10]: the slope's SE is σ/√Σ(x-x̄)² ≈ 0.0173; the
    estimate is within 3 SE of 2 and the reported SE within 20% of the true one."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, 50)
    fit = line_fit(x, 2 * x + 1 + rng.normal(0, 0.5, 50))
    true_se = 0.5 / math.sqrt(np.sum((x - x.mean()) ** 2))
    assert abs(fit.slope - 2) < 3 * true_se
    assert fit.slope_se == pytest.approx(true_se, rel=0.2)
    assert 0.95 < fit.r2 < 1.0


def test_two_points_and_bad_input():
    fit = line_fit([0, 1], [1, 3])
    assert fit.slope == pytest.approx(2) and math.isnan(fit.slope_se)
    with pytest.raises(ValueError):
        line_fit([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError):
        line_fit([1, 2], [1, np.nan])
