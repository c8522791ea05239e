"""Survival statistics of escape times: Kaplan-Meier against lifelines and a hand-worked example;
the censored exponential mean and its interval against samples of known mean."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sgdexp.stats.survival import escape_time_summary, kaplan_meier


def _censored_sample(seed: int, n: int, mean: float, budget: float):
    times = np.random.default_rng(seed).exponential(mean, n)
    return np.minimum(times, budget), times <= budget


def test_kaplan_meier_hand_worked_example():
    # times 2, 3+, 3, 5, 5, 8+ (+ censored); tie of an escape and a censoring at 3
    times, escaped = [2, 3, 3, 5, 5, 8], [1, 0, 1, 1, 1, 0]
    km = kaplan_meier(times, escaped)
    assert list(km.times) == [0, 2, 3, 5, 8]
    # 6 at risk at 2 (one escape), 5 at 3 (one escape; the censored one leaves after), 3 at 5 (two)
    assert np.allclose(km.survival, [1, 5 / 6, 2 / 3, 2 / 9, 2 / 9])
    # Greenwood at t = 3: Σ d/(n(n-d)) = 1/(6·5) + 1/(5·4); band on log(-log S)
    s, var = 2 / 3, 1 / 30 + 1 / 20
    z = stats.norm.ppf(0.975)
    lo = math.exp(-math.exp(math.log(-math.log(s)) - z * math.sqrt(var) / math.log(s)))
    assert km.lower[2] == pytest.approx(lo, rel=1e-12) and km.lower[2] < s < km.upper[2]
    assert km.restricted_mean(10) == pytest.approx(2 * 1 + 1 * 5 / 6 + 2 * 2 / 3 + 3 * 2 / 9 + 2 * 2 / 9)


def test_kaplan_meier_equals_lifelines_on_censored_sample():
    from lifelines import KaplanMeierFitter

    times, escaped = _censored_sample(0, 300, 100.0, 120.0)
    times = np.ceil(times)  # integer steps, with ties, as the escape task records them
    for confidence in (0.95, 0.8):
        km = kaplan_meier(times, escaped, confidence=confidence)
        fit = KaplanMeierFitter().fit(times, escaped, alpha=1 - confidence)
        assert np.array_equal(km.times, fit.timeline)
        assert np.allclose(km.survival, fit.survival_function_.values[:, 0], rtol=1e-12, atol=1e-14)
        band = fit.confidence_interval_.values
        assert np.allclose(km.lower, band[:, 0], rtol=1e-10, atol=1e-12)
        assert np.allclose(km.upper, band[:, 1], rtol=1e-10, atol=1e-12)
    from lifelines.utils import restricted_mean_survival_time

    assert km.restricted_mean(120.0) == pytest.approx(float(restricted_mean_survival_time(fit, t=120.0)), rel=1e-9)


@pytest.mark.parametrize("budget", [np.inf, 150.0])
def test_exponential_mean_interval_covers_the_truth(budget):
    """Mean 100: without censoring and with about 22% censored (budget 150). One sample: the
    interval covers 100 and the estimate is within 3 standard errors; 400 samples: coverage of
    the 95% interval at least 95% minus 3 binomial standard errors (it is conservative by design)."""
    mean, n = 100.0, 200
    finite_budget = budget if np.isfinite(budget) else 1e12
    times, escaped = _censored_sample(1, n, mean, finite_budget)
    s = escape_time_summary(times, escaped, finite_budget)
    assert s["replicas"] == n and s["escaped"] + s["censored"] == n and s["lower_bound"] == 0.0
    assert s["fraction"] == pytest.approx(escaped.mean())
    assert s["mean_steps_low"] < mean < s["mean_steps_high"]
    assert abs(s["mean_steps"] - mean) < 3 * mean / math.sqrt(s["escaped"])
    # restricted mean: E[min(T, budget)] = mean (1 - e^{-budget/mean})
    rmst = mean * (1 - math.exp(-finite_budget / mean))
    assert abs(s["restricted_mean_steps"] - rmst) < 3 * mean / math.sqrt(n)

    covered = sum(
        (lambda r: r["mean_steps_low"] < mean < r["mean_steps_high"])(
            escape_time_summary(*_censored_sample(100 + k, 50, mean, finite_budget), finite_budget))
        for k in range(400)
    )
    assert covered / 400 >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / 400)


def test_all_censored_reports_a_lower_bound():
    budget = 1000
    s = escape_time_summary(np.full(64, budget), np.zeros(64, bool), budget)
    assert s["lower_bound"] == 1.0 and s["escaped"] == 0 and s["censored"] == 64 and s["fraction"] == 0.0
    assert math.isnan(s["mean_steps"]) and math.isnan(s["mean_steps_high"])
    # one-sided 95%: P(no escape in T total steps | mean m) = e^{-T/m} = 0.05 at m = T / ln 20
    assert s["mean_steps_low"] == pytest.approx(64 * budget / math.log(20))
    assert s["restricted_mean_steps"] == pytest.approx(budget)


def test_bad_input():
    with pytest.raises(ValueError):
        escape_time_summary([1, 2], [True], 10)
    with pytest.raises(ValueError):
        escape_time_summary([11], [True], 10)
    with pytest.raises(ValueError):
        kaplan_meier([], [])
