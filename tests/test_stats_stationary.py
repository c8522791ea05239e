"""Stationary variance of SGD with torch's momentum: closed form, Lyapunov solution, simulation; for
noise with memory (epoch batches, anti-correlated and fractional Gaussian noise), against
simulations of torch.optim.SGD driven by that noise; and what a finite window of it reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdexp.noise.generators import StreamingFGN
from sgdexp.stats import (correlated_stationary_variance, epoch_noise_autocorrelation, expected_window_variance,
                          relaxation_steps, sgd_stationary_variance)

LAM = np.array([0.02, 0.1, 0.5, 1.0, 1.5])


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_heavy_ball_closed_form(beta):
    eta, s = 0.1, 0.3
    lam = LAM * (1 - beta)  # stay stable at every β
    closed = (1 + beta) * eta * s / ((1 - beta) * lam * (2 + 2 * beta - eta * lam))
    assert np.allclose(sgd_stationary_variance(lam, s, eta, beta), closed, rtol=1e-10)


def test_no_stationary_state_is_nan():
    v = sgd_stationary_variance(np.array([-1.0, 0.0, 25.0, 1.0]), 1.0, lr=0.1)
    assert np.isnan(v[:3]).all() and np.isfinite(v[3])


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.6, False), (0.6, True)])
def test_matches_torch_sgd_simulation(beta, nesterov):
    # R independent replicas of d directions, gradient λx + √s ξ, stepped by torch.optim.SGD
    eta, s, replicas, steps = 0.2, 0.5, 4000, 600
    lam = torch.tensor([0.1, 0.5, 1.0, 2.0]) * (1 - beta)
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(replicas, len(lam), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=eta, momentum=beta, nesterov=nesterov)
    snapshots = []
    for t in range(steps):
        x.grad = lam.double() * x.detach() + s ** 0.5 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        opt.step()
        if t >= 300 and t % 50 == 0:  # burn-in ≥ 30 relaxation times of the slowest direction
            snapshots.append(x.detach().var(dim=0))
    measured = torch.stack(snapshots).mean(0).numpy()
    predicted = sgd_stationary_variance(lam.numpy(), s, eta, beta, nesterov)
    # each snapshot's variance has relative s.e. √(2/R) = 2.2%; 6 snapshots, partly correlated: 4 s.e. of one
    assert np.allclose(measured, predicted, rtol=4 * np.sqrt(2 / replicas))
    assert not nesterov or not np.allclose(predicted, sgd_stationary_variance(lam.numpy(), s, eta, beta))


def test_relaxation_steps():
    assert np.allclose(relaxation_steps([0.5, 0.01], 0.1), [20, 1000])
    assert np.allclose(relaxation_steps([0.5], 0.1, momentum=0.9), [2])


@pytest.mark.parametrize("beta,nesterov", [(0.0, False), (0.9, False), (0.6, True)])
def test_uncorrelated_noise_is_the_lyapunov_solution(beta, nesterov):
    lam = LAM * (1 - beta)
    assert np.allclose(correlated_stationary_variance(lam, [0.3], 0.1, beta, nesterov),
                       sgd_stationary_variance(lam, 0.3, 0.1, beta, nesterov), rtol=1e-12)
    # a noise with memory shorter than the filter's is not uncorrelated
    assert not np.allclose(correlated_stationary_variance(lam, [0.3, 0.1], 0.1, beta, nesterov),
                           sgd_stationary_variance(lam, 0.3, 0.1, beta, nesterov))


def test_anticorrelated_noise_closed_form():
    # ζ_t = w_t − w_{t−1}: γ = (2, −1); x_{t+1} = a x_t − η ζ_t gives Var x = 2η²/(1 + a), a = 1 − ηλ,
    # which is ηλ times the uncorrelated noise of the same variance: flat directions keep almost none
    eta, lam = 0.2, np.array([1e-4, 0.01, 0.5, 5.0, 12.0])
    var = correlated_stationary_variance(lam, [2.0, -1.0], eta)
    assert np.allclose(var[:4], 2 * eta**2 / (2 - eta * lam[:4]), rtol=1e-10)
    assert np.allclose(var[:4] / sgd_stationary_variance(lam[:4], 2.0, eta), eta * lam[:4], rtol=1e-10)
    assert np.isnan(var[4])  # ηλ > 2: no stationary state


def test_epoch_noise_autocorrelation():
    rho = epoch_noise_autocorrelation(64, 8)  # M = 8 batches: −(M − k)/(M (M − 1)), summing to 0 over ±lags
    k = np.arange(1, 8)
    assert rho[0] == 1 and np.allclose(rho[1:], -(8 - k) / (8 * 7))
    assert abs(rho[0] + 2 * rho[1:].sum()) < 1e-12
    left_out = epoch_noise_autocorrelation(70, 8)  # 6 samples sit each epoch out: the sum stays positive
    assert len(left_out) == 8 and rho[0] + 2 * left_out[1:].sum() > 0.05
    assert np.array_equal(epoch_noise_autocorrelation(8, 8), [1.0])


def simulate_variance(lam: np.ndarray, noise, eta: float, beta: float, replicas: int, burn_in: int, steps: int):
    """Var x over `replicas` replicas per direction, averaged over `steps` steps after `burn_in`,
    for torch.optim.SGD on ½λx² with gradient noise `noise()` (replicas × directions per step)."""
    x = torch.zeros(replicas, len(lam), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=eta, momentum=beta)
    lam_t = torch.as_tensor(lam)
    total = torch.zeros(len(lam), dtype=torch.float64)
    for t in range(burn_in + steps):
        x.grad = lam_t * x.detach() + noise()
        opt.step()
        if t >= burn_in:
            total += x.detach().var(dim=0)
    return (total / steps).numpy()


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_epoch_batches_match_simulation(beta):
    # R replicas, each with its own permutation every epoch of a fixed population of N per-sample
    # deviations (mean 0, variance 1 per direction): exactly the model's noise at fixed weights
    n, b, replicas, eta = 64, 8, 2000, 0.2
    m = n // b
    gen = torch.Generator().manual_seed(0)
    lam = np.array([0.005, 0.05, 0.5, 2.0]) * (1 - beta)  # relaxation 125 epochs … a quarter of a step
    d = torch.randn(n, len(lam), generator=gen, dtype=torch.float64)
    d = (d - d.mean(0)) / d.std(0, unbiased=False)
    state = {"perm": None, "step": 0}

    def noise():
        if state["step"] % m == 0:
            state["perm"] = torch.argsort(torch.rand(replicas, n, generator=gen), dim=1)
        batch = state["perm"][:, (state["step"] % m) * b : (state["step"] % m + 1) * b]
        state["step"] += 1
        return d[batch].mean(dim=1)  # (replicas, directions)

    burn_in = int(3 * relaxation_steps(lam[0], eta, beta))  # from x = 0: e^-6 of the variance short
    measured = simulate_variance(lam, noise, eta, beta, replicas, burn_in, 40 * m)
    s = (n - b) / (n - 1) / b
    predicted = correlated_stationary_variance(lam, s * epoch_noise_autocorrelation(n, b), eta, beta)
    uncorrelated = sgd_stationary_variance(lam, s, eta, beta)
    # the slowest direction keeps ~1-6% of the uncorrelated prediction; each step's variance has relative
    # s.e. √(2/R) = 3.2%, and the 320 averaged steps are correlated over the slow relaxation: 4 of them
    assert measured[0] / uncorrelated[0] < 0.1
    assert np.allclose(measured, predicted, rtol=4 * np.sqrt(2 / replicas)), (measured / predicted)


@pytest.mark.parametrize("hurst", [0.3, 0.7])
def test_fractional_gaussian_noise_matches_simulation(hurst):
    # the streaming fGn model's own autocovariance (StreamingFGN.memory) drives the prediction
    replicas, eta = 2000, 0.2
    lam = np.array([0.05, 0.3, 2.0])  # relaxation 100 steps … 2.5
    source = StreamingFGN(hurst, (replicas, len(lam)), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    measured = simulate_variance(lam, source.sample, eta, 0.0, replicas, 1000, 400)
    predicted = correlated_stationary_variance(lam, source.memory(), eta)
    white = sgd_stationary_variance(lam, 1.0, eta)
    assert np.all(predicted[:2] < white[:2]) if hurst < 0.5 else np.all(predicted[:2] > white[:2])
    assert np.allclose(measured, predicted, rtol=5 * np.sqrt(2 / replicas)), (measured / predicted)


def test_window_variance_closed_form():
    # uncorrelated noise, β = 0: x is AR(1) with φ = 1 − ηλ, C(k) = Var x φ^k, and a window of T
    # steps reads T/(T − 1)(Var x − Var x̄_T), Var x̄_T = (Var x/T)(1 + 2 Σ_{k<T} (1 − k/T) φ^k)
    eta, s, lam = 0.2, 0.7, np.array([0.01, 0.05, 0.5, 3.0, 12.0])
    for window in (2, 10, 400, 5000):
        phi, k = 1 - eta * lam[:4], np.arange(1, window)
        var = eta**2 * s / (1 - phi**2)
        var_mean = var / window * (1 + 2 * ((1 - k / window) * phi[:, None] ** k).sum(axis=1))
        got = expected_window_variance(lam, [s], window, eta)
        assert np.allclose(got[:4], window / (window - 1) * (var - var_mean), rtol=1e-10)
        assert np.isnan(got[4])  # ηλ > 2
    # a window of many relaxation times reads the stationary variance, short by ≈ 2τ/T for τ ≫ 1
    # (β = 0: (2τ − 2)/T exactly to first order in 1/T; momentum alike)
    for beta in (0.0, 0.9):
        lr, window = 0.2 * (1 - beta), 10**6
        ratio = expected_window_variance(lam[:2], [s], window, lr, beta) / sgd_stationary_variance(lam[:2], s, lr, beta)
        assert np.allclose(1 - ratio, 2 * relaxation_steps(lam[:2], lr, beta) / window, rtol=0.02)


def simulate_window_variance(lam: np.ndarray, noise, eta: float, beta: float, replicas: int, burn_in: int,
                             window: int):
    """Each replica's sample variance of x over `window` steps after `burn_in` (torch.optim.SGD on
    ½λx², gradient noise `noise()` of replicas × directions per step): (mean, standard error) over
    the replicas, per direction."""
    x = torch.zeros(replicas, len(lam), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=eta, momentum=beta)
    lam_t, path = torch.as_tensor(lam), []
    for t in range(burn_in + window):
        x.grad = lam_t * x.detach() + noise()
        opt.step()
        if t >= burn_in:
            path.append(x.detach().clone())
    variances = torch.stack(path, dim=1).var(dim=1)  # (replicas, directions), about each window's mean
    return variances.mean(0).numpy(), (variances.std(0) / np.sqrt(replicas)).numpy()


@pytest.mark.parametrize("noise, beta", [("white", 0.9), ("fgn", 0.0)])
def test_window_variance_matches_simulation(noise, beta):
    # a window of 400 steps along directions relaxing over 100 … 2.5 steps: with white noise it misses
    # ~2τ/T of Var x, with fGn at H = 0.7 (long memory) half of it along the slowest direction
    replicas, eta, window = 2000, 0.2 * (1 - beta), 400
    lam = np.array([0.05, 0.3, 2.0 * (1 - beta)])
    gen = torch.Generator().manual_seed(2)
    if noise == "white":
        gamma, sample = [1.0], lambda: torch.randn(replicas, len(lam), generator=gen, dtype=torch.float64)
    else:
        source = StreamingFGN(0.7, (replicas, len(lam)), generator=gen, dtype=torch.float64)
        gamma, sample = source.memory(), source.sample
    measured, se = simulate_window_variance(lam, sample, eta, beta, replicas, 1000, window)
    predicted = expected_window_variance(lam, gamma, window, eta, beta)
    stationary = correlated_stationary_variance(lam, gamma, eta, beta)
    assert predicted[0] < (0.9 if noise == "white" else 0.6) * stationary[0]
    assert np.all(np.abs(measured - predicted) < 4 * se), ((measured - predicted) / se, predicted / stationary)
