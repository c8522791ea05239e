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
"""
from __future__ import annotations

import numpy as np


def sgd_stationary_variance(curvature, noise_variance, lr: float, momentum: float = 0.0,
                            nesterov: bool = False) -> np.ndarray:
    """Stationary Var x along directions of curvature λ (array) for per-step noise variance s.

    NaN where no stationary state exists (λ ≤ 0 or the iteration is unstable, e.g. ηλ ≥ 2 at β = 0).
    """
    lam = np.atleast_1d(np.asarray(curvature, dtype=float))
    s = np.broadcast_to(np.asarray(noise_variance, dtype=float), lam.shape)
    eta, beta = float(lr), float(momentum)
    n = lam.size
    a = np.zeros((n, 2, 2))
    b = np.zeros((n, 2))
    step = eta * (1 + beta) if nesterov else eta
    a[:, 0, 0] = 1 - step * lam
    a[:, 0, 1] = -eta * beta * (beta if nesterov else 1.0)
    a[:, 1, 0] = lam
    a[:, 1, 1] = beta
    b[:, 0], b[:, 1] = -step, 1.0
    q = s[:, None, None] * b[:, :, None] * b[:, None, :]
    radius = np.abs(np.linalg.eigvals(a)).max(axis=1)
    ok = (lam > 0) & (radius < 1)
    # vec(S) = (I − A ⊗ A)^{-1} vec(Q), one 4×4 system per direction with a stationary state
    kron = np.einsum("nij,nkl->nikjl", a[ok], a[ok]).reshape(-1, 4, 4)
    var = np.full(n, np.nan)
    var[ok] = np.linalg.solve(np.eye(4) - kron, q[ok].reshape(-1, 4, 1))[:, 0, 0]
    return var.reshape(np.shape(curvature)) if np.ndim(curvature) else var


def relaxation_steps(curvature, lr: float, momentum: float = 0.0) -> np.ndarray:
    """Steps for the mean to relax by 1/e along curvature λ: 1/(η_eff λ) with η_eff = η/(1 − β)
    (the slow mode of momentum SGD for η_eff λ ≪ 1; plain SGD: 1/(ηλ))."""
    lam = np.asarray(curvature, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(lam > 0, (1 - momentum) / (lr * lam), np.inf)
