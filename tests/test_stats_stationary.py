"""Stationary variance of SGD with torch's momentum: closed form, Lyapunov solution, simulation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdexp.stats import relaxation_steps, sgd_stationary_variance

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
