r"""Tail index :math:`\alpha \in (0, 2]` of symmetric :math:`\alpha`-stable (S\ :math:`\alpha`\ S) samples.

Which convention?
-----------------
* **Per series** (``pooled=False``, the default): every series along ``dim`` -- e.g. the
  noise samples of one parameter -- gets its own :math:`\alpha` (the "per parameter"
  convention of Battash et al. 2023, where ``x`` has shape ``(n_noise_samples, n_params)``).
* **Pooled** (``pooled=True``): all entries of ``x`` (all coordinates of all noise vectors)
  are flattened into ONE sample and one :math:`\alpha` comes back (Simsekli, Sagun &
  Gurbuzbalaban 2019). Beware: coordinates with different scales make the pooled sample a
  *scale mixture*, which is heavier tailed than any of its components, so the pooled
  :math:`\alpha` reads low even when every coordinate is exactly Gaussian (a mixture of
  N(0, s_i^2) is not Gaussian). Standardise per coordinate first if that is not what you want.

Methods (``method=``)
---------------------
``"ecf"`` (DEFAULT)
    Characteristic-function regression (Koutrouvelis 1980, one pass): for S\ :math:`\alpha`\ S
    with scale c, :math:`\log(-\log|\varphi(t)|^2) = \log 2 + \alpha\log c + \alpha\log t`.
    Each series is standardised by half its interquartile range, the empirical CF is taken at
    10 equispaced points :math:`t \in [0.1, 1]` and :math:`\alpha` is the least-squares slope
    against :math:`\log t`. Location-free (only :math:`|\hat\varphi|` is used) and accurate up to
    :math:`\alpha = 2`, where the quantile and tail methods struggle.
``"quantile"``
    McCulloch (1986) for the symmetric case: :math:`\nu = (x_{.95}-x_{.05})/(x_{.75}-x_{.25})` is
    inverted through the exact :math:`\nu(\alpha)` of the symmetric stable law (table
    :data:`_MCCULLOCH_ALPHA`/:data:`_MCCULLOCH_NU`, PCHIP-interpolated in :math:`\log\nu`). Fast,
    location-free, but noisier and biased low near :math:`\alpha = 2`.
``"block_sum"``
    Mohammadi, Mohammadpour & Ogata (2015) as used by Simsekli et al. (2019): with n = m K and
    m the largest divisor of n not above :math:`\sqrt n`, :math:`Y_k` = sum of the k-th block of m
    samples, :math:`1/\alpha = (\overline{\log|Y|} - \overline{\log|X|}) / \log m`. If n has no
    divisor of at least :math:`\lfloor\sqrt n\rfloor/2` (e.g. n prime), m = :math:`\lfloor\sqrt
    n\rfloor` and the last n - mK samples are dropped. Needs centred data (it sums samples).
``"hill"``
    Hill (1975) estimator on :math:`|x|` with the k = ``max(10, round(hill_fraction * n))``
    largest order statistics (``hill_fraction=0.05`` default). Needs centred data. Strongly
    biased upward for :math:`\alpha \gtrsim 1.5`: the S\ :math:`\alpha`\ S tail is only
    asymptotically Pareto, the second-order term grows as :math:`\alpha \to 2`, and a Gaussian
    (:math:`\alpha = 2`) has no power-law tail at all (the raw Hill value there is > 2 and is
    clipped). Use it only for clearly heavy tails (:math:`\alpha \lesssim 1.5`).

Measured accuracy (``scripts/bench_estimators.py``, 200 series of exact S\ :math:`\alpha`\ S,
n = 4096; bias / RMSE; time per series on one core):

==============  ===============  ===============  ===============  ===============  ========
method          alpha = 1.2      alpha = 1.5      alpha = 1.8      alpha = 2.0      ms/series
==============  ===============  ===============  ===============  ===============  ========
ecf (default)   -0.002 / 0.027   -0.000 / 0.029   -0.001 / 0.025   -0.002 / 0.004   0.3
quantile        -0.001 / 0.027   +0.001 / 0.029   +0.005 / 0.048   -0.025 / 0.044   0.1
block_sum       +0.003 / 0.064   -0.001 / 0.078   +0.002 / 0.109   -0.048 / 0.080   0.03
hill (5%)       +0.023 / 0.097   +0.148 / 0.191   +0.200 / 0.200   +0.000 / 0.000   0.04
scipy McCulloch +0.007 / 0.028   +0.004 / 0.030   +0.007 / 0.048   -0.023 / 0.042   0.4
==============  ===============  ===============  ===============  ===============  ========

(hill's 0.000 at alpha = 2 is the clip at 2, and its +0.200 at 1.8 too: it reads everything
above ~1.6 as 2. "scipy McCulloch" is ``scipy.stats.levy_stable._fitstart``; the scipy MLE
``levy_stable.fit`` takes 30-80 s per series.) At n = 1024 the ecf RMSE is 0.05-0.055 for
alpha in [1.2, 1.8] and 0.009 at 2; at n = 16384 it is 0.011-0.014 (0.002 at 2).

``"ecf"`` is the default because it is the only method with RMSE <= 0.05 at every
:math:`\alpha \in \{1.2, 1.5, 1.8, 2.0\}` at n = 4096 (worst case 0.029); the quantile
method, as good for :math:`\alpha \le 1.5`, degrades toward 2 (0.048 at 1.8, bias -0.025 at 2).

All estimators are scale invariant (:math:`\alpha(c x) = \alpha(x)`), vectorised over series,
and clip the result to ``[alpha_min, 2]`` (``alpha_min = 0.1``). Fewer than 8 samples, or a
series with zero spread, gives NaN. Non-finite entries are not allowed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator

from ._arrays import apply_chunked, as_series, finite_row_means, from_series

__all__ = ["tail_index", "TAIL_METHODS", "DEFAULT_TAIL_METHOD"]

TAIL_METHODS = ("ecf", "quantile", "block_sum", "hill")
DEFAULT_TAIL_METHOD = "ecf"
ALPHA_MIN = 0.1

# Exact quantile ratio nu(alpha) = (x_.95 - x_.05) / (x_.75 - x_.25) = x_.95 / x_.75 of the
# symmetric alpha-stable law (scale-free), computed once with
#
#     from scipy.stats import levy_stable, norm
#     for a in np.round(np.arange(0.5, 2.0001, 0.05), 2):
#         q = norm.ppf([.95, .75]) if a == 2 else levy_stable.ppf([.95, .75], a, 0.0)
#         print(a, q[0] / q[1])
#
# (scipy 1.17). Checks: alpha = 1 gives tan(0.45 pi) = 6.31375 (Cauchy), alpha = 2 gives
# 1.644854/0.674490 = 2.43866 (Gaussian); McCulloch's (1986) Table III lists the same values
# (2.439 at alpha = 2, 2.5 at ~1.92, 2.6 at ~1.81, ...).
_MCCULLOCH_ALPHA = np.round(np.arange(0.5, 2.0001, 0.05), 2)
_MCCULLOCH_NU = np.array([
    44.63511824753499, 31.565569287105582, 23.612189233630406, 18.43961658053118,
    14.89376695736904, 12.357522338004646, 10.479083372731544, 9.047016125750465,
    7.92849245062722, 7.036865886417777, 6.313751514675028, 5.718675712998847,
    5.222868895082046, 4.805423242575426, 4.450850593410562, 4.147493898068316,
    3.8864699465531802, 3.660946064140461, 3.4656247168720853, 3.296351847096237,
    3.149795084776513, 3.023170463550897, 2.9140291631651394, 2.820127521848138,
    2.739382232032637, 2.6698816207372347, 2.609913722720803, 2.5579845613053287,
    2.512818285479325, 2.473342252853709, 2.4386636364352383,
])
_NU_TO_ALPHA = PchipInterpolator(np.log(_MCCULLOCH_NU[::-1]), _MCCULLOCH_ALPHA[::-1])

# ECF grid (in units of the standardised series x / (IQR/2)); chosen by measured RMSE.
_ECF_T = 0.1 * np.arange(1, 11)  # t = 0.1, 0.2, ..., 1.0


def tail_index(x, dim: int = 0, method: str = DEFAULT_TAIL_METHOD, pooled: bool = False,
               *, hill_fraction: float = 0.05):
    r"""S\ :math:`\alpha`\ S tail index of each series of ``x`` (see the module docstring).

    Parameters
    ----------
    x : array-like or torch.Tensor
        Samples along ``dim``; every other axis indexes an independent series. The samples
        should be centred (zero location) for ``"block_sum"`` and ``"hill"``;
        ``"ecf"`` and ``"quantile"`` do not care about location.
    dim : int
        Sample axis.
    method : {"ecf", "quantile", "block_sum", "hill"}
        Estimator; ``"ecf"`` is the default (the most accurate, see the module docstring).
    pooled : bool
        ``False``: one :math:`\alpha` per series (per-parameter convention, Battash et al. 2023).
        ``True``: flatten ALL entries of ``x`` into one sample, one :math:`\alpha` (Simsekli et
        al. 2019).
    hill_fraction : float
        Fraction of the sample used as the tail by ``"hill"``.

    Returns
    -------
    numpy.ndarray of float64 with shape ``x.shape`` without ``dim`` (a Python float when that
    shape is ``()`` or ``pooled=True``), values in ``[0.1, 2]`` or NaN.
    """
    if method not in TAIL_METHODS:
        raise ValueError(f"method={method!r}; expected one of {TAIL_METHODS}")
    X, batch = as_series(x, dim, pooled)
    if not np.all(np.isfinite(X)):
        raise ValueError("tail_index: x contains NaN or inf")
    n = X.shape[1]
    out = np.full(X.shape[0], np.nan)
    if n < 8:
        return from_series(out, batch)
    ok = np.ptp(X, axis=1) > 0
    if ok.any():
        Xo = X[ok]
        if method == "ecf":
            a = apply_chunked(_ecf, Xo)
        elif method == "quantile":
            a = apply_chunked(_quantile, Xo)
        elif method == "block_sum":
            a = apply_chunked(_block_sum, Xo)
        else:
            a = apply_chunked(_hill, Xo, hill_fraction)
        out[ok] = np.clip(a, ALPHA_MIN, 2.0)
    return from_series(out, batch)


def _iqr_half(X: np.ndarray) -> np.ndarray:
    q = np.quantile(X, [0.25, 0.75], axis=1)
    s = 0.5 * (q[1] - q[0])
    # fall back to the (half) 10-90% range, then the std, for series with a degenerate IQR
    bad = ~(s > 0)
    if bad.any():
        q2 = np.quantile(X[bad], [0.1, 0.9], axis=1)
        s2 = 0.25 * (q2[1] - q2[0])
        s2 = np.where(s2 > 0, s2, X[bad].std(axis=1))
        s[bad] = s2
    return s


def _ecf(X: np.ndarray) -> np.ndarray:
    Z = X / _iqr_half(X)[:, None]
    logt = np.log(_ECF_T)
    y = np.empty((len(X), len(_ECF_T)))
    # _ECF_T = k * 0.1 (k = 1..10): exp(i t_k z) = exp(i 0.1 z)^k, one complex exp and then
    # cheap complex products instead of 10 cos/sin pairs (rounding drift ~k * 1e-16)
    w = np.exp(1j * _ECF_T[0] * Z)
    p = w.copy()
    for k in range(len(_ECF_T)):
        if k:
            p *= w
        m = p.mean(axis=1)
        m2 = m.real ** 2 + m.imag ** 2
        y[:, k] = np.log(-np.log(np.clip(m2, 1e-300, 1.0 - 1e-15)))
    lc = logt - logt.mean()
    return (y - y.mean(axis=1, keepdims=True)) @ lc / (lc @ lc)


def _quantile(X: np.ndarray) -> np.ndarray:
    q = np.quantile(X, [0.05, 0.25, 0.75, 0.95], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = (q[3] - q[0]) / (q[2] - q[1])
    # nu outside the table: below 2.4387 reads as alpha = 2 (clipped), above 44.6 as 0.5
    lnu = np.log(np.clip(nu, _MCCULLOCH_NU[-1], _MCCULLOCH_NU[0]))
    return np.where(np.isnan(nu), np.nan, _NU_TO_ALPHA(lnu))


def _block_size(n: int) -> int:
    r = math.isqrt(n)
    m = max(d for d in range(1, r + 1) if n % d == 0)
    return m if m >= max(2, r // 2) else r


def _logabs(X: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        L = np.log(np.abs(X))
    return L


def _block_sum(X: np.ndarray) -> np.ndarray:
    n = X.shape[1]
    m = _block_size(n)
    K = n // m
    Xu = X[:, : K * m]
    Y = Xu.reshape(len(X), K, m).sum(axis=2)
    # exact zeros (e.g. dead units) carry no tail information: they are left out of the means
    inv = (finite_row_means(_logabs(Y), empty=0.0) - finite_row_means(_logabs(Xu), empty=0.0)) / math.log(m)
    with np.errstate(divide="ignore"):
        return np.where(inv > 0, 1.0 / inv, 2.0)


def _hill(X: np.ndarray, fraction: float) -> np.ndarray:
    n = X.shape[1]
    k = int(min(n - 1, max(10, round(fraction * n))))
    A = np.abs(X)
    # the k+1 largest |x| per series, unordered, then the (k+1)-th largest as threshold
    top = -np.partition(-A, k, axis=1)[:, : k + 1]
    thr = top.min(axis=1)
    top = np.sort(top, axis=1)[:, 1:]  # the k largest
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_log_excess = np.mean(np.log(top), axis=1) - np.log(thr)
        return np.where(mean_log_excess > 0, 1.0 / mean_log_excess, 2.0)
