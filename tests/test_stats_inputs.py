"""Inputs the estimators cannot use get a ValueError that says what is wrong, not numpy's or torch's
error from deep inside (an empty array gave "cannot reshape array of size 0 into shape (0)")."""
from __future__ import annotations

import re

import numpy as np
import pytest

from sgdexp.stats import (autocorrelation, correlated_stationary_variance, epoch_noise_autocorrelation,
                          expected_window_variance, gradient_noise_scale, gradient_snr, hurst_exponent,
                          relaxation_steps, sgd_stationary_variance, tail_index, top_power_share)


@pytest.mark.parametrize("estimator", [tail_index, hurst_exponent, top_power_share, lambda x: autocorrelation(x, 1)])
@pytest.mark.parametrize("shape", [(0,), (0, 3)])
def test_no_samples_is_one_clear_error(estimator, shape):
    with pytest.raises(ValueError, match=re.escape(f"need at least one sample: x of shape {shape} has none along dim=0")):
        estimator(np.zeros(shape))


def test_series_without_samples_along_another_axis_still_work():
    # three series of 0 samples is an error; zero series of 100 samples is an empty answer
    assert tail_index(np.zeros((100, 0)), dim=0).shape == (0,)


@pytest.mark.parametrize("fn", [gradient_noise_scale, lambda g: gradient_snr({"layer": g})])
def test_no_gradients_is_one_clear_error(fn):
    with pytest.raises(ValueError, match=r"need an \(N, \.\.\.\) array of N >= 1 gradients, got shape \(0, 7\)"):
        fn(np.zeros((0, 7)))


@pytest.mark.parametrize("call", [
    lambda lr, m: sgd_stationary_variance(np.array([1.0]), 1.0, lr, m),
    lambda lr, m: correlated_stationary_variance(np.array([1.0]), [1.0], lr, m),
    lambda lr, m: expected_window_variance(np.array([1.0]), [1.0], 10, lr, m),
    lambda lr, m: relaxation_steps(np.array([1.0]), lr, m),
])
def test_sgd_predictions_name_an_optimizer_setting_out_of_range(call):
    # momentum 1 was numpy's LinAlgError (a singular system); a negative rate a silent NaN
    with pytest.raises(ValueError, match=r"momentum=1\.0 must be in \[0, 1\)"):
        call(0.1, 1.0)
    with pytest.raises(ValueError, match=r"lr=-0\.1 must be a finite number >= 0"):
        call(-0.1, 0.0)
    zero = np.asarray(call(0.0, 0.0))  # a schedule's rate of 0: no stationary state, no relaxation
    assert np.isnan(zero).all() or np.isinf(zero).all()


@pytest.mark.parametrize("n,batch_size", [(10, 0), (10, 11), (10, 2.5)])
def test_epoch_noise_autocorrelation_needs_a_batch_within_the_data(n, batch_size):
    # B = 0 was a ZeroDivisionError, B > n an answer for a sampler that cannot exist
    with pytest.raises(ValueError, match=r"need integers 1 <= batch_size <= n"):
        epoch_noise_autocorrelation(n, batch_size)
