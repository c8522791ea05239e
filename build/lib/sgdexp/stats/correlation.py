r"""Sample autocorrelation of many series at once (FFT)."""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

from ._arrays import as_series

__all__ = ["autocorrelation"]


def autocorrelation(x, max_lag: int, dim: int = 0) -> np.ndarray:
    r"""Normalised sample autocorrelation :math:`\hat\rho(k)`, k = 0..``max_lag``, of each series.

    With :math:`y_t = x_t - \bar x` (the series' own mean removed) and n samples,

    .. math:: \hat\gamma(k) = \frac1n\sum_{t=0}^{n-1-k} y_t\,y_{t+k}, \qquad
              \hat\rho(k) = \hat\gamma(k)/\hat\gamma(0).

    This is the *biased* estimator (divides by n, not n - k): it is positive semi-definite and
    has lower mean-squared error, but is shrunk toward 0 by the factor (n - k)/n at lag k, so
    keep ``max_lag`` << n (or multiply by n/(n - k) yourself). Computed for all series at
    once by zero-padded FFT (O(n log n) per series, exact up to rounding).

    Parameters
    ----------
    x : array-like or torch.Tensor
        Time along ``dim``; every other axis is an independent series.
    max_lag : int
        Largest lag, 0 <= max_lag < n.

    Returns
    -------
    numpy.ndarray of float64: ``x``'s shape with axis ``dim`` replaced by ``max_lag + 1`` lags
    (lag axis at position ``dim``). ``rho[0] == 1``; constant series give NaN.
    """
    X, batch = as_series(x, dim)
    n = X.shape[1]
    max_lag = int(max_lag)
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag={max_lag} must be in [0, n) with n={n}")
    Y = X - X.mean(axis=1, keepdims=True)
    L = next_fast_len(2 * n - 1, real=True)
    F = rfft(Y, n=L, axis=1)
    acov = irfft(F.real ** 2 + F.imag ** 2, n=L, axis=1)[:, : max_lag + 1] / n
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = acov / acov[:, :1]
    rho[~(acov[:, 0] > 0)] = np.nan
    rho = rho.reshape(batch + (max_lag + 1,))
    ndim = len(batch) + 1
    return np.moveaxis(rho, -1, dim % ndim)
