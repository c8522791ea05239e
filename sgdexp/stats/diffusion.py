r"""Mean squared displacement of a trajectory and its diffusion exponent.

.. math:: \mathrm{MSD}(\tau) = \frac{1}{T-\tau}\sum_{t=0}^{T-\tau-1}\|x_{t+\tau}-x_t\|^2,
          \qquad \mathrm{MSD}(\tau)\propto\tau^\gamma

averaged over all T − τ time origins, the squared norm summed over the d coordinates. γ = 1 is normal
diffusion (a random walk), γ > 1 super-diffusion (2: ballistic drift; fBm: 2H), γ < 1 sub-diffusion.

:func:`msd` picks one of two exact algorithms per call by its sizes (the cost model in
:func:`_use_fft`):

* direct: per lag, ‖x_{t+τ} − x_t‖² = ‖x_{t+τ}‖² + ‖x_t‖² − 2 x_{t+τ}·x_t summed over t, i.e. two
  cumulative sums of row norms and one BLAS dot product over the (T − τ)·d block (no temporary
  array: the plain loop ``((x[τ:] - x[:-τ])**2).sum()`` writes two). O(n_lags · T · d).
* FFT (Calandrini et al. 2011, the algorithm of MDAnalysis and tidynamics): the same split, with the
  cross term of *all* lags at once from the autocorrelation by zero-padded FFT. The power spectra of
  the d coordinates are summed before the one inverse transform. O(T log T · d), whatever the lags.

With `stride` > 1 (origins every stride-th step only) it sums the differences x_{t+τ} − x_t directly,
in the trajectory's own precision with float64 sums: the cost is n_lags · (T / stride) · d either way,
and a float32 trajectory is not copied to float64.

The trajectory is centred (its time mean removed: MSD does not change) before either, which keeps
the rounding of the norm split small: relative error ≈ 1e-16 · (spread of x / lag-τ step)², below
1e-10 for any trajectory whose steps are not 10³ times smaller than its spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from scipy.fft import next_fast_len, irfft, rfft

from ._arrays import to_numpy

__all__ = ["msd", "diffusion_exponent", "WindowedMSD", "DiffusionExponent", "power_law_fit", "local_exponents",
           "crossover", "log_lags", "mean_squared_displacement", "MSDResult"]

# The FFT costs about as much as FFT_PASSES · log2(2T) lags of the direct sum (one BLAS dot over the
# block each): measured with scripts/bench_msd.py (2000 x 200: 30 lags direct 2 ms against FFT 45 ms,
# all 1999 lags direct 0.7 s against FFT 0.06 s, one thread).
FFT_PASSES = 3.5
_CHUNK_ELEMENTS = 1 << 22  # coordinates are transformed in chunks of about this many numbers


def _converted(x) -> bool:
    """Whether `to_numpy(x)` returns a new array (a torch tensor that is not float64 on the CPU, or
    an array of another dtype), which `_trajectory` may then centre in place."""
    if hasattr(x, "detach"):
        return str(x.dtype) != "torch.float64" or str(x.device) != "cpu"
    return isinstance(x, np.ndarray) and x.dtype != np.float64


def _positions(x) -> np.ndarray:
    """The trajectory as a 2-D float array, float32 kept as it is (no copy where none is needed)."""
    a = to_numpy(x, keep_float32=True)
    if a.ndim == 0:
        raise ValueError("need a trajectory with time along axis 0")
    a = a.reshape(a.shape[0], -1)
    if a.shape[0] < 2:
        raise ValueError("need a trajectory of at least 2 points")
    return a


def _trajectory(x, stride: int = 1) -> np.ndarray:
    """The trajectory for `_msd`: 2-D, and for the norm split (stride 1) float64 and centred."""
    if stride < 1:
        raise ValueError(f"stride={stride}: at least 1")
    a = _positions(x)
    if stride > 1:  # direct differences: neither centring nor float64 needed
        return a
    if a.dtype != np.float64:
        a = a.astype(np.float64)
    elif not _converted(x):  # the caller's array: centre a copy
        return np.ascontiguousarray(a - a.mean(axis=0))
    a -= a.mean(axis=0)  # our own copy: centre it without another
    return a


def _lags(lags, T: int) -> np.ndarray:
    if lags is None:
        return np.arange(1, T)
    out = np.asarray(lags, dtype=np.int64).reshape(-1)
    if len(out) and (out.min() < 0 or out.max() >= T):
        raise ValueError(f"lags must be in [0, {T - 1}]")
    return out


def _use_fft(T: int, n_lags: int) -> bool:
    return n_lags > FFT_PASSES * np.log2(2 * T)


def log_lags(max_lag: int, n: int, min_lag: int = 1) -> np.ndarray:
    """Up to `n` distinct integer lags, log-spaced from `min_lag` to `max_lag` (inclusive)."""
    if max_lag < min_lag:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round(np.geomspace(min_lag, max_lag, max(1, n))).astype(np.int64))


def _sums_of_squares(X: np.ndarray) -> np.ndarray:
    """c[k] = Σ_{t<k} ‖x_t‖² (k = 0..T): the norm terms of every lag from two slices of one cumsum."""
    return np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->i", X, X))])


def _msd_direct(X: np.ndarray, lags: np.ndarray) -> np.ndarray:
    T = len(X)
    c = _sums_of_squares(X)
    out = np.empty(len(lags))
    for i, tau in enumerate(lags):
        n = T - tau
        cross = np.vdot(X[tau:].ravel(), X[:n].ravel()) if tau else c[T]
        out[i] = (c[T] - c[tau] + c[n] - 2.0 * cross) / n
    return out


def _msd_strided(X: np.ndarray, lags: np.ndarray, stride: int) -> np.ndarray:
    """The direct sum over the origins t = 0, stride, 2·stride, … < T − τ only, from the differences
    x_{t+τ} − x_t themselves: in the trajectory's own precision (a float32 trajectory is not copied
    to float64 whole), each origin's squares summed in float64."""
    T = len(X)
    out = np.empty(len(lags))
    for i, tau in enumerate(lags):
        diff = X[tau:T:stride] - X[0 : T - tau : stride]
        out[i] = np.square(diff, out=diff).sum(axis=1, dtype=np.float64).mean()
    return out


def _msd_fft(X: np.ndarray, lags: np.ndarray) -> np.ndarray:
    T, d = X.shape
    L = next_fast_len(2 * T, real=True)
    power = np.zeros(L // 2 + 1)
    cols = max(1, _CHUNK_ELEMENTS // L)
    for j in range(0, d, cols):
        F = rfft(X[:, j : j + cols], n=L, axis=0, workers=-1)
        power += (F.real ** 2 + F.imag ** 2).sum(axis=1)
    cross = irfft(power, n=L)[:T]  # cross[τ] = Σ_t x_{t+τ}·x_t
    c = _sums_of_squares(X)
    n = T - lags
    return np.maximum(c[T] - c[lags] + c[n] - 2.0 * cross[lags], 0.0) / n


def msd(trajectory, lags=None, stride: int = 1) -> np.ndarray:
    r"""Time-averaged mean squared displacement at each lag (float64 array, one value per lag).

    Parameters
    ----------
    trajectory : (T, ...) array or tensor
        Positions, time along axis 0 (trailing axes are the coordinates, flattened).
    lags : sequence of int in [0, T − 1], optional
        Default: every lag 1 … T − 1.
    stride : int
        Average over the origins t = 0, stride, 2·stride, … only (1: all of them, the exact time
        average). Costs 1/stride of the direct sum; worth it where one origin's squared displacement
        already averages over many coordinates, so that neighbouring origins add little.
    """
    X = _trajectory(trajectory, stride)
    return _msd(X, _lags(lags, len(X)), stride)


def _msd(X: np.ndarray, lags: np.ndarray, stride: int = 1) -> np.ndarray:
    """:func:`msd` of a trajectory already through `_trajectory(x, stride)`."""
    if not len(lags):
        return np.zeros(0)
    if stride > 1:
        out = _msd_strided(X, lags, stride)
    else:
        out = _msd_fft(X, lags) if _use_fft(len(X), len(lags)) else _msd_direct(X, lags)
    out[lags == 0] = 0.0
    return out


def power_law_fit(lags, values) -> tuple[float, float]:
    """(γ, prefactor) of values ≈ prefactor · lags^γ by least squares in log–log (positive points only)."""
    x, y = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    # the least-squares line in closed form: np.polyfit's SVD costs ~10x more, and the diffusion
    # analysis fits several curves at each measurement
    lx, ly = np.log(x[ok]), np.log(y[ok])
    cx = lx - lx.mean()
    sxx = float(cx @ cx)
    if sxx == 0.0:
        return float("nan"), float("nan")
    gamma = float(cx @ (ly - ly.mean())) / sxx
    return gamma, float(np.exp(ly.mean() - gamma * lx.mean()))


def local_exponents(lags, values) -> np.ndarray:
    """d log(values) / d log(lags) at each lag (second-order differences on the uneven log grid)."""
    x, y = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    out = np.full(len(x), np.nan)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() >= 2:
        out[ok] = np.gradient(np.log(y[ok]), np.log(x[ok]))
    return out


def crossover(lags, local, level: float = 1.0) -> float:
    """The lag of the last fall of the local exponent from above `level` to below it, after which it
    stays below (interpolated in log lag): the change from super- to sub-diffusion at long times.
    Dips at short lags that recover (a noisy local slope) do not count. NaN if the exponent never
    rises above `level` or is above it at the last lag (no crossover yet)."""
    x, g = np.asarray(lags, dtype=float), np.asarray(local, dtype=float)
    ok = np.isfinite(g) & (x > 0)
    x, g = x[ok], g[ok]
    above = np.flatnonzero(g > level)
    if not len(above) or above[-1] == len(g) - 1:
        return float("nan")
    j = above[-1] + 1
    g0, g1, lx0, lx1 = g[j - 1], g[j], np.log(x[j - 1]), np.log(x[j])
    return float(np.exp(lx0 + (g0 - level) / (g0 - g1) * (lx1 - lx0)))


@dataclass(frozen=True)
class DiffusionExponent:
    """MSD at `lags`, its log–log slope γ (`exponent`, with `prefactor`) and local slopes per lag."""

    lags: np.ndarray
    msd: np.ndarray
    exponent: float
    prefactor: float
    local: np.ndarray


def diffusion_exponent(trajectory, lags=None, *, n_lags: int = 30, stride: int = 1) -> DiffusionExponent:
    """γ of MSD(τ) ∝ τ^γ: the least-squares log–log slope of :func:`msd` over `lags` (default `n_lags`
    log-spaced lags from 1 to T // 4, where each lag still has at least 3T/4 origins), and the
    local exponents d log MSD / d log τ at each lag; origins every `stride` records (see :func:`msd`)."""
    X = _trajectory(trajectory, stride)
    lags = log_lags(max(1, len(X) // 4), n_lags) if lags is None else _lags(lags, len(X))
    m = _msd(X, lags, stride)
    gamma, prefactor = power_law_fit(lags, m)
    return DiffusionExponent(lags=lags, msd=m, exponent=gamma, prefactor=prefactor, local=local_exponents(lags, m))


# ----------------------------------------------------------------------------- the older interface
@dataclass(frozen=True)
class MSDResult:
    """Mean squared displacement and its power-law fit ``msd ~ prefactor * lags ** exponent``."""

    lags: np.ndarray
    msd: np.ndarray
    exponent: float
    prefactor: float


def mean_squared_displacement(theta_series, lags=None, *, n_lags: int = 20) -> MSDResult:
    """:func:`diffusion_exponent` with the older defaults (`n_lags` log-spaced lags from 1 to T // 4)
    and result type; kept for code that uses it."""
    r = diffusion_exponent(theta_series, lags, n_lags=n_lags)
    if lags is not None and (r.lags.min() < 1):
        raise ValueError("lags must be >= 1")
    return MSDResult(lags=r.lags, msd=r.msd, exponent=r.exponent, prefactor=r.prefactor)


# ----------------------------------------------------------------------------- streamed windows
class WindowedMSD:
    """The time-averaged MSD over consecutive windows of `window` records, fed a block of records at a
    time: window w covers records w·window … (w+1)·window − 1, its origins are every `stride`-th
    record of it, and MSD(τ) averages ‖x_{o+τ} − x_o‖² over the origins o with o + τ in the window,
    which is :func:`msd` (with `stride`) of the window's records. Only the origins of the last
    max(lags) records are kept (about max(lags)/stride rows, in time order), not the window: memory
    and a checkpoint of its state stay small whatever `window` is. Records are torch tensors (rows of
    a block); differences and each lag's sum of squares over a block are taken in their precision
    (torch sums pairwise), averages in float64.

    For one lag the targets in a block are every `stride`-th row of it and their origins consecutive
    kept origins, so each lag is one subtraction of two strided views: no gather, no copy of the
    block. `update(block)` returns the windows it completed, as (records, MSD per lag); `current()`
    is the window in progress (its lags up to a quarter of its records, as :func:`diffusion_exponent`'s
    default grid would have them).
    """

    def __init__(self, lags, window: int, stride: int, dim: int, dtype=None, device=None):
        import torch

        self.lags = np.asarray(lags, dtype=np.int64)
        if not len(self.lags) or self.lags.min() < 1 or self.lags.max() >= window or stride < 1:
            raise ValueError(f"lags in [1, {window - 1}] and stride >= 1 (got {self.lags.tolist()}, stride={stride})")
        self.window, self.stride = int(window), int(stride)
        self.max_lag = int(self.lags.max())
        self.keep = self.max_lag // self.stride + 1  # origins a later block can still pair with
        self.origins = torch.zeros(self.keep, dim, dtype=dtype, device=device)  # in time order, grown as needed
        self.n_origins = 0  # rows of `origins` in use: origins number first … first + n_origins − 1
        self.first = 0  # the window's origin number (position // stride) of row 0
        self.sums = np.zeros(len(self.lags))
        self.counts = np.zeros(len(self.lags), dtype=np.int64)
        self.position = 0  # records of the window in progress

    def update(self, block) -> List[Tuple[int, np.ndarray]]:
        done: List[Tuple[int, np.ndarray]] = []
        start = 0
        while start < len(block):
            part = block[start: start + self.window - self.position]
            self._add(part)
            start += len(part)
            if self.position == self.window:
                done.append((self.window, self._means()))
                self.sums[:] = 0.0
                self.counts[:] = 0
                self.position, self.n_origins, self.first = 0, 0, 0
        return done

    def _add(self, part) -> None:
        import torch

        k, p0, stride = len(part), self.position, self.stride
        # keep the origins a target in or after this part can reach (number >= (p0 - max lag) / stride),
        # then append this part's own
        drop = min(self.n_origins, max(0, -(-(p0 - self.max_lag) // stride) - self.first))
        if drop:
            self.origins[: self.n_origins - drop] = self.origins[drop: self.n_origins].clone()
            self.n_origins -= drop
            self.first += drop
        new = part[-p0 % stride:: stride]
        if self.n_origins + len(new) > len(self.origins):
            grown = self.origins.new_zeros(self.n_origins + len(new), self.origins.shape[1])
            grown[: self.n_origins] = self.origins[: self.n_origins]
            self.origins = grown
        self.origins[self.n_origins: self.n_origins + len(new)] = new
        self.n_origins += len(new)
        totals, used = [], []
        for j, tau in enumerate(self.lags.tolist()):
            p = max(p0, tau)  # the first target: p >= tau, p ≡ tau (mod stride)
            p += (tau - p) % stride
            n = len(range(p, p0 + k, stride))
            if n <= 0:
                continue
            m = (p - tau) // stride - self.first  # its origin's row
            diff = part[p - p0:: stride][:n] - self.origins[m: m + n]
            totals.append(diff.square_().sum())
            used.append((j, n))
        if totals:
            sums = torch.stack(totals).double().cpu().numpy()
            for (j, n), total in zip(used, sums):
                self.sums[j] += total
                self.counts[j] += n
        self.position += k

    def _means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)

    def current(self) -> Tuple[np.ndarray, np.ndarray]:
        """(lags, MSD) of the window in progress, lags up to a quarter of its records."""
        keep = (self.lags <= self.position // 4) & (self.counts > 0)
        return self.lags[keep], self._means()[keep]

    def state_dict(self) -> dict:
        import torch

        return {"origins": self.origins[: self.n_origins].cpu().clone(), "first": self.first,
                "sums": torch.from_numpy(self.sums.copy()), "counts": torch.from_numpy(self.counts.copy()),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        origins = state["origins"]
        self.n_origins, self.first = len(origins), int(state["first"])
        if len(origins) > len(self.origins):
            self.origins = self.origins.new_zeros(len(origins), self.origins.shape[1])
        self.origins[: self.n_origins] = origins
        self.sums[:] = state["sums"].numpy()
        self.counts[:] = state["counts"].numpy()
        self.position = int(state["position"])
