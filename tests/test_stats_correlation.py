"""FFT autocorrelation: exactness against the direct sum, and AR(1) rho(k) = phi^k."""

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from sgdexp.stats import autocorrelation


def test_matches_direct_biased_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 4)) + 5.0
    r = autocorrelation(x, 10)
    assert r.shape == (11, 4)
    for j in range(4):
        y = x[:, j] - x[:, j].mean()
        n = len(y)
        direct = np.array([(y[k:] * y[: n - k]).sum() / n for k in range(11)]) / (y @ y / n)
        np.testing.assert_allclose(r[:, j], direct, atol=1e-12)


def test_ar1_geometric_decay():
    phi, n, s = 0.7, 20000, 10
    rng = np.random.default_rng(1)
    e = rng.standard_normal((n, s))
    e[0] /= np.sqrt(1 - phi ** 2)
    x = lfilter([1.0], [1.0, -phi], e, axis=0)
    r = autocorrelation(x, 10).mean(axis=1)
    # Bartlett: SD(rho_hat(k)) <= sqrt((1+phi^2)/(1-phi^2)/n) = 0.012 per series, /sqrt(10)
    # for the mean -> 0.004; the biased (n-k)/n factor is < 1e-3 here
    np.testing.assert_allclose(r, phi ** np.arange(11), atol=0.02)


def test_dims_torch_and_errors():
    x = torch.randn(3, 500, 2, generator=torch.Generator().manual_seed(2))
    r = autocorrelation(x, 5, dim=1)
    assert isinstance(r, np.ndarray) and r.shape == (3, 6, 2)
    np.testing.assert_allclose(r[:, 0, :], 1.0)
    np.testing.assert_allclose(r[1, :, 0], autocorrelation(x[1, :, 0], 5), atol=1e-12)
    np.testing.assert_allclose(autocorrelation(x, 5, dim=-2), r)
    assert np.all(np.isnan(autocorrelation(np.ones(20), 3)))
    with pytest.raises(ValueError):
        autocorrelation(np.ones(20), 20)
