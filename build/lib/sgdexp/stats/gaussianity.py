r"""Tests of Gaussianity for many series at once, with false-discovery control across series."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from ._arrays import as_series

__all__ = ["GaussianityResult", "gaussianity_tests", "anderson_darling_normal"]


@dataclass(frozen=True)
class GaussianityResult:
    """Per-series results of :func:`gaussianity_tests` (arrays of shape ``x.shape`` without ``dim``).

    Attributes
    ----------
    normaltest_stat, normaltest_p
        D'Agostino-Pearson K^2 statistic (skewness + kurtosis) and its chi^2_2 p-value.
    anderson_stat, anderson_p
        Anderson-Darling A^2 against a normal with estimated mean and variance, the
        small-sample-adjusted :math:`A^{*2} = A^2 (1 + 0.75/n + 2.25/n^2)`, and its p-value from
        D'Agostino & Stephens (1986, Table 4.9) (reject at 5% iff :math:`A^{*2} > 0.752`).
    shapiro_p
        Shapiro-Wilk p-value, or ``None`` if not requested (``shapiro=False``, the default:
        scipy loops over series in Python and warns for n > 5000).
    rejected
        Boolean: the series' ``normaltest`` p-value is rejected by Benjamini-Hochberg at FDR
        level ``alpha_level`` across all series.
    fraction_rejected
        ``rejected.mean()``: the share of series that are (FDR-controlled) non-Gaussian.
    fraction_rejected_anderson
        The same for the Anderson-Darling p-values.
    alpha_level
        The FDR level used.
    """

    normaltest_stat: np.ndarray
    normaltest_p: np.ndarray
    anderson_stat: np.ndarray
    anderson_p: np.ndarray
    shapiro_p: np.ndarray | None
    rejected: np.ndarray
    fraction_rejected: float
    fraction_rejected_anderson: float
    alpha_level: float


def anderson_darling_normal(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted A*^2 and its p-value for each row of ``X`` (n_series, n); vectorised."""
    n = X.shape[1]
    mu = X.mean(axis=1, keepdims=True)
    sd = X.std(axis=1, ddof=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        Z = np.sort((X - mu) / sd, axis=1)
    logcdf = _st.norm.logcdf(Z)
    logsf = _st.norm.logsf(Z)
    i = np.arange(1, n + 1)
    A2 = -n - np.mean((2 * i - 1) * (logcdf + logsf[:, ::-1]), axis=1)
    A = A2 * (1.0 + 0.75 / n + 2.25 / n ** 2)
    # the top branch exp(1.2937 - 5.709 A + 0.0186 A^2) turns upward past A = 153.5: cap there
    # (p = 1e-190, i.e. "zero")
    Ac = np.minimum(A, 153.0)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.select(
            [A >= 0.6, A >= 0.34, A >= 0.2],
            [np.exp(1.2937 - 5.709 * Ac + 0.0186 * Ac ** 2),
             np.exp(0.9177 - 4.279 * A - 1.38 * A ** 2),
             1.0 - np.exp(-8.318 + 42.796 * A - 59.938 * A ** 2)],
            default=1.0 - np.exp(-13.436 + 101.14 * A - 223.73 * A ** 2),
        )
    p = np.where(np.isfinite(A), np.clip(p, 0.0, 1.0), np.nan)
    return A, p


def _bh_reject(p: np.ndarray, level: float) -> np.ndarray:
    rej = np.zeros(p.shape, dtype=bool)
    fin = np.isfinite(p)
    if fin.any():
        rej[fin] = _st.false_discovery_control(p[fin], method="bh") <= level
    return rej


def gaussianity_tests(x, dim: int = 0, alpha_level: float = 0.05, *, shapiro: bool = False
                      ) -> GaussianityResult:
    r"""Per-series Gaussianity tests with Benjamini-Hochberg control across series.

    Each series along ``dim`` (e.g. the noise samples of one parameter) is tested for
    normality with D'Agostino-Pearson (``scipy.stats.normaltest``, vectorised over series),
    Anderson-Darling (vectorised here; mean and variance estimated) and optionally
    Shapiro-Wilk. Because thousands of series are tested at once, "how many are non-Gaussian"
    is answered with the Benjamini-Hochberg adjusted p-values
    (``scipy.stats.false_discovery_control``): under the global null (all Gaussian) the
    fraction rejected is ~0 (P(any rejection) <= ``alpha_level``); on heavy-tailed series it
    approaches 1 as n grows.

    Needs n >= 8 samples per series (normaltest's limit; it warns for n < 20).

    Returns
    -------
    :class:`GaussianityResult` of numpy arrays shaped like ``x`` without ``dim``. Constant
    series get NaN p-values and are never rejected.
    """
    X, batch = as_series(x, dim)
    n = X.shape[1]
    if n < 8:
        raise ValueError(f"gaussianity_tests needs at least 8 samples per series, got {n}")
    const = ~(np.ptp(X, axis=1) > 0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant series: handled below
        k2, p_nt = _st.normaltest(X, axis=1)
    k2 = np.where(const, np.nan, k2)
    p_nt = np.where(const, np.nan, p_nt)
    a2, p_ad = anderson_darling_normal(X)
    a2 = np.where(const, np.nan, a2)
    p_ad = np.where(const, np.nan, p_ad)
    p_sw = None
    if shapiro:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_sw = np.where(const, np.nan, _st.shapiro(X, axis=1).pvalue).reshape(batch)
    rej = _bh_reject(p_nt, alpha_level)
    rej_ad = _bh_reject(p_ad, alpha_level)
    return GaussianityResult(
        normaltest_stat=k2.reshape(batch), normaltest_p=p_nt.reshape(batch),
        anderson_stat=a2.reshape(batch), anderson_p=p_ad.reshape(batch), shapiro_p=p_sw,
        rejected=rej.reshape(batch), fraction_rejected=float(rej.mean()),
        fraction_rejected_anderson=float(rej_ad.mean()), alpha_level=float(alpha_level),
    )
