r"""Stationary variance of SGD (with torch's momentum) on a quadratic, per Hessian eigendirection.

Along an eigendirection of H with eigenvalue λ, SGD on a quadratic with gradient noise ξ_t of
variance s per step, uncorrelated in time, is a linear system. torch.optim.SGD (dampening 0) keeps
the buffer u_t = β u_{t−1} + g_t with g_t = λ x_t + ξ_t and steps x_{t+1} = x_t − η u_t (heavy
ball), or x_{t+1} = x_t − η(g_t + β u_t) with `nesterov`. With the state z_t = (x_t, u_{t−1}):

    heavy ball:  z_{t+1} = [[1 − ηλ, −ηβ], [λ, β]] z_t + (−η, 1) ξ_t
    Nesterov:    z_{t+1} = [[1 − η(1+β)λ, −ηβ²], [λ, β]] z_t + (−η(1+β), 1) ξ_t

and the stationary covariance solves the discrete Lyapunov equation S = A S Aᵀ + s b bᵀ. For the
heavy ball it has the closed form (x_t is then an AR(2) process, x_{t+1} = (1+β−ηλ) x_t − β x_{t−1} − η ξ_t)

    Var x = (1 + β) η s / ((1 − β) λ (2 + 2β − ηλ)),     β = 0:  η s / (λ (2 − ηλ)),

which tests check against the Lyapunov solution and a simulation of torch.optim.SGD. The diagonal
of the full covariance in H's eigenbasis depends only on the noise variance along that direction
(each direction's recursion involves only its own coordinate), so off-diagonal noise does not enter.
A weight decay δ acts as curvature λ + δ. Written here because no library offers the SGD-momentum
Lyapunov solution per direction; 4×4 systems solved in one batched `numpy.linalg.solve`.

Noise with memory (`correlated_stationary_variance`) goes through the filter's autocorrelation, and
so does what a finite window of the weights reads of their variance (`expected_window_variance`).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

BLOCK_LAGS = 4096  # lags of the filter's autocorrelation held at once (`_filter_autocorrelation`)


def _check_optimizer(lr, momentum) -> tuple:
    """(η, β) as floats, or a ValueError naming the one outside SGD's range (η ≥ 0, 0 ≤ β < 1; η = 0,
    a schedule's rate at its ends, leaves no stationary state and no relaxation)."""
    eta, beta = float(lr), float(momentum)
    if not (np.isfinite(eta) and eta >= 0):
        raise ValueError(f"lr={lr!r} must be a finite number >= 0")
    if not 0 <= beta < 1:
        raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
    return eta, beta


def _sgd_system(lam: np.ndarray, lr: float, momentum: float, nesterov: bool):
    """(A, b, ok) per direction: the state matrices above for curvatures `lam` (1-d), and whether a
    stationary state exists (λ > 0 and A's spectral radius below 1)."""
    eta, beta = _check_optimizer(lr, momentum)
    n = lam.size
    a = np.zeros((n, 2, 2))
    b = np.zeros((n, 2))
    step = eta * (1 + beta) if nesterov else eta
    a[:, 0, 0] = 1 - step * lam
    a[:, 0, 1] = -eta * beta * (beta if nesterov else 1.0)
    a[:, 1, 0] = lam
    a[:, 1, 1] = beta
    b[:, 0], b[:, 1] = -step, 1.0
    radius = np.abs(np.linalg.eigvals(a)).max(axis=1)
    return a, b, (lam > 0) & (radius < 1)


def _unit_noise_covariance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P = Σ_k A^k b bᵀ (Aᵀ)^k, the stationary state covariance for uncorrelated unit noise:
    vec(P) = (I − A ⊗ A)^{-1} vec(b bᵀ), one 4×4 system per direction."""
    kron = np.einsum("nij,nkl->nikjl", a, a).reshape(-1, 4, 4)
    q = b[:, :, None] * b[:, None, :]
    return np.linalg.solve(np.eye(4) - kron, q.reshape(-1, 4, 1)).reshape(-1, 2, 2)


def _per_direction(curvature, autocovariance):
    """(λ as a 1-d array, γ as one row per direction): the public functions' `curvature` (a number
    or an array) and `autocovariance` (one row for every direction, or a row per direction)."""
    lam = np.atleast_1d(np.asarray(curvature, dtype=float))
    gamma = np.asarray(autocovariance, dtype=float)
    return lam, np.broadcast_to(gamma if gamma.ndim == 2 else gamma[None, :], (lam.size, gamma.shape[-1]))


def _shaped(values: np.ndarray, curvature) -> np.ndarray:
    """One value per direction in the shape of `curvature` (a 1-element array for a number)."""
    return values.reshape(np.shape(curvature)) if np.ndim(curvature) else values


def sgd_stationary_variance(curvature, noise_variance, lr: float, momentum: float = 0.0,
                            nesterov: bool = False) -> np.ndarray:
    """Stationary Var x along directions of curvature λ (array) for per-step noise variance s.

    NaN where no stationary state exists (λ ≤ 0 or the iteration is unstable, e.g. ηλ ≥ 2 at β = 0).
    """
    lam = np.atleast_1d(np.asarray(curvature, dtype=float))
    s = np.broadcast_to(np.asarray(noise_variance, dtype=float), lam.shape)
    a, b, ok = _sgd_system(lam, lr, momentum, nesterov)
    var = np.full(lam.size, np.nan)
    var[ok] = s[ok] * _unit_noise_covariance(a[ok], b[ok])[:, 0, 0]
    return _shaped(var, curvature)


def correlated_stationary_variance(curvature, autocovariance, lr: float, momentum: float = 0.0,
                                   nesterov: bool = False) -> np.ndarray:
    """Stationary Var x along directions of curvature λ (array) for gradient noise that is
    correlated in time, with autocovariance γ(k) = Cov(ξ_t, ξ_{t+k}) at lags k = 0 … L given by
    `autocovariance` (one row for every direction, or one row per direction) and 0 beyond L.

    x is the linear filter x_t = Σ_k h_k ξ_{t−1−k} of the noise, h_k = e₁ᵀ A^k b, so
    Var x = Σ_{k,l} h_k h_l γ(k − l) = γ(0) R(0) + 2 Σ_{m≥1} γ(m) R(m), with the filter's own
    autocorrelation R(m) = Σ_k h_k h_{k+m} = e₁ᵀ A^m P e₁ (P: `_unit_noise_covariance`). With
    γ = (s,) this is `sgd_stationary_variance`. Kühn & Rosenow's prediction for epoch sampling
    (under their assumption that the noise does not depend on the weights' small fluctuations) is
    this with `epoch_noise_autocorrelation` times the per-step variance; a noise whose
    autocovariance sums to zero over all lags (epoch batches, ζ_t = w_t − w_{t−1}) leaves flat
    directions (R(m) ≈ R(0) over the noise's memory) with almost no variance. NaN where no
    stationary state exists. Memory: `BLOCK_LAGS` lags per direction at a time, whatever L."""
    lam, gamma = _per_direction(curvature, autocovariance)
    a, b, ok = _sgd_system(lam, lr, momentum, nesterov)
    var = np.full(lam.size, np.nan)
    if not ok.any():
        return _shaped(var, curvature)
    gamma, total = gamma[ok], np.zeros(int(ok.sum()))
    for start, r in _filter_autocorrelation(a[ok], b[ok], gamma.shape[1]):
        weights = np.full(r.shape[1], 2.0)
        weights[0] = 1.0 if start == 0 else 2.0
        total += (gamma[:, start : start + r.shape[1]] * r * weights).sum(axis=1)
    var[ok] = total
    return _shaped(var, curvature)


def _filter_autocorrelation(a: np.ndarray, b: np.ndarray, lags: int):
    """Yields (start, R) for blocks of the filter's autocorrelation R(m) = e₁ᵀ A^m P e₁ at lags
    m = start … start + width − 1 < `lags`, one row per direction (`_sgd_system`'s a, b), `BLOCK_LAGS`
    lags at a time: A^m P e₁ for a block's m built by doubling, then moved on by A^width. Stops after
    the block where every direction's filter has forgotten (|A^m P e₁| below 1e-15 of R(0))."""
    powers = _unit_noise_covariance(a, b)[:, :, :1]  # (n, 2, 1)
    jump, width = a, max(1, min(lags, BLOCK_LAGS))
    while powers.shape[2] < width:
        powers = np.concatenate([powers, jump @ powers], axis=2)
        jump = jump @ jump
    powers, jump = powers[:, :, :width], np.linalg.matrix_power(a, width)
    r0 = powers[:, 0, 0].copy()
    for start in range(0, lags, width):
        yield start, powers[:, 0, : min(width, lags - start)]
        powers = jump @ powers
        if np.all(np.abs(powers).max(axis=(1, 2)) < 1e-15 * r0):
            return


def expected_window_variance(curvature, autocovariance, window: int, lr: float, momentum: float = 0.0,
                             nesterov: bool = False) -> np.ndarray:
    """E[s²_T], the expected sample variance (unbiased, about the window's own mean) of x over
    `window` = T consecutive steps of the stationary state along directions of curvature λ (array),
    for gradient noise of autocovariance γ(0 … L) as in `correlated_stationary_variance` ((s,):
    uncorrelated). What a window of measured weights reads: its mean moves with x's slow part, so

        E[s²_T] = T/(T − 1) (Var x − Var x̄_T),   Var x̄_T = (1/T) Σ_{|k|<T} (1 − |k|/T) C(k),

    with C(k) = Σ_m γ(|m|) R(|k − m|) the autocovariance of x (R: the filter's, `_filter_autocorrelation`).
    For uncorrelated noise Var x̄_T ≈ (2τ/T) Var x (τ = 1/(η_eff λ) steps, the window ≫ τ); noise
    whose autocovariance sums to zero (epoch batches) leaves the window mean almost still; long
    memory (fGn, H > ½) moves it much more, ~(τ/T)^(2 − 2H): at H = 0.7 a window of 10 τ reads
    about half of Var x. C from one FFT convolution per direction (scipy's `fftconvolve`) over
    L + min(T, the filter's memory) lags; memory O(L + T) numbers per direction. NaN where no
    stationary state exists, and for T < 2."""
    lam, gamma = _per_direction(curvature, autocovariance)
    a, b, ok = _sgd_system(lam, lr, momentum, nesterov)
    out = np.full(lam.size, np.nan)
    t, lags = int(window), gamma.shape[1]
    k = np.arange(t)
    fejer = np.where(k == 0, 1.0, 2.0) * (1 - k / t) / t  # Var x̄_T = Σ_k fejer(k) C(k), k ≥ 0
    for i in np.flatnonzero(ok & (t >= 2)):
        # R up to lag L + T − 2 (the farthest |k − m| the window needs), fewer where the filter forgot
        r = np.concatenate([block[0] for _, block in _filter_autocorrelation(a[i : i + 1], b[i : i + 1], lags + t - 1)])
        g = gamma[i]
        full = fftconvolve(np.concatenate([g[::-1], g[1:]]), np.concatenate([r[::-1], r[1:]]))
        c = full[lags + len(r) - 2 :][:t]  # C(0 … T − 1); 0 past the filter's memory
        c = np.pad(c, (0, t - len(c)))
        out[i] = t / (t - 1) * (c[0] - fejer @ c)
    return _shaped(out, curvature)


def epoch_noise_autocorrelation(n: int, batch_size: int) -> np.ndarray:
    """ρ(k), k = 0 … M − 1, of the batch noise of epoch sampling (a fresh permutation of the n
    samples each epoch, cut into M = n // B batches of B, the rest sitting the epoch out), averaged
    over a step's position in its epoch, at fixed weights; 0 from lag M on. Two distinct samples
    of one permutation have covariance −C/(n − 1), so two batches of one epoch −C/(n − 1) against
    each batch's variance (n − B)/(n − 1) · C/B: ρ = −B/(n − B) for a pair in the same epoch, which
    steps k apart are with probability (M − k)/M. For n = MB: −(M − k)/(M (M − 1)), and the M
    batches of an epoch sum to zero (Σ_k over all lags of γ is 0)."""
    if not (int(n) == n >= 1 and int(batch_size) == batch_size and 1 <= batch_size <= n):
        raise ValueError(f"need integers 1 <= batch_size <= n, got n={n!r}, batch_size={batch_size!r}")
    m = n // batch_size
    if m <= 1 or n <= batch_size:
        return np.ones(1)
    k = np.arange(m)
    rho = -batch_size / (n - batch_size) * (m - k) / m
    rho[0] = 1.0
    return rho


def relaxation_steps(curvature, lr: float, momentum: float = 0.0) -> np.ndarray:
    """Steps for the mean to relax by 1/e along curvature λ: 1/(η_eff λ) with η_eff = η/(1 − β)
    (the slow mode of momentum SGD for η_eff λ ≪ 1; plain SGD: 1/(ηλ))."""
    lr, momentum = _check_optimizer(lr, momentum)
    lam = np.asarray(curvature, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(lam > 0, (1 - momentum) / (lr * lam), np.inf)
