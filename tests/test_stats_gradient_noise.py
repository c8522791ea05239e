"""Gradient-noise quantities on synthetic Gaussian gradients with known G and Sigma."""

import numpy as np
import pytest
import torch

from sgdexp.stats import (
    covariance_hessian_alignment,
    gradient_noise_scale,
    gradient_snr,
    mean_squared_displacement,
    noise_scale_two_batch,
)

D = 40


def setup(seed=0):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal(D) * 0.5
    sd = np.sqrt(rng.uniform(0.5, 2.0, D))  # Sigma = diag(sd^2)
    return rng, G, sd


def test_noise_scale_per_sample_and_minibatch():
    rng, G, sd = setup()
    true_tr, true_g2 = float(sd @ sd), float(G @ G)
    N = 20000
    per_sample = G + sd * rng.standard_normal((N, D))
    # tr estimate: relative SD sqrt(2 tr(S^2)/tr(S)^2 / N) ~ 0.0017; |G|^2 (no full grad):
    # SD ~ 2 sqrt(G'SG/N) ~ 0.03 on ~10 -> 0.3%; 5% tolerance is ample
    for fg in (G, None):
        est = gradient_noise_scale(per_sample, full_grad=fg)
        assert est.trace_cov == pytest.approx(true_tr, rel=0.02)
        assert est.grad_sq_norm == pytest.approx(true_g2, rel=0.03)
        assert est.b_simple == pytest.approx(true_tr / true_g2, rel=0.05)
    B = 32
    mini = G + sd * rng.standard_normal((4000, D)) / np.sqrt(B)
    for fg in (G, None):
        est = gradient_noise_scale(torch.tensor(mini), full_grad=fg, batch_size=B)
        assert est.trace_cov == pytest.approx(true_tr, rel=0.05)
        assert est.b_simple == pytest.approx(true_tr / true_g2, rel=0.06)


def test_noise_scale_exact_small_case():
    g = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [2.0, -2.0]])
    est = gradient_noise_scale(g, full_grad=[2.0, 0.0])
    # deviations: (-1,0),(1,0),(0,2),(0,-2): sum of squares 10, /N=4 -> 2.5; |G|^2 = 4
    assert est.trace_cov == pytest.approx(2.5) and est.grad_sq_norm == pytest.approx(4.0)
    assert est.b_simple == pytest.approx(0.625)
    est = gradient_noise_scale(g.reshape(4, 2, 1))
    assert est.trace_cov == pytest.approx(10 / 3)
    assert est.grad_sq_norm == pytest.approx(4.0 - 10 / 3 / 4)


def test_two_batch_estimator_recovers_truth():
    rng, G, sd = setup(1)
    true_tr, true_g2 = float(sd @ sd), float(G @ G)
    bs, bb, steps = 8, 128, 4000
    gs = G + sd * rng.standard_normal((steps, D)) / np.sqrt(bs)
    gb = G + sd * rng.standard_normal((steps, D)) / np.sqrt(bb)
    s2, b2 = (gs ** 2).sum(1), (gb ** 2).sum(1)
    est = noise_scale_two_batch(s2, b2, bs, bb)
    # SD of the estimates from Var|g_B|^2 = 2 tr(S^2)/B^2 + 4 G'SG/B (Gaussian), propagated
    var = lambda B: (2 * np.sum(sd ** 4) / B ** 2 + 4 * np.sum(G ** 2 * sd ** 2) / B) / steps
    sd_g2 = np.sqrt(bb ** 2 * var(bb) + bs ** 2 * var(bs)) / (bb - bs)
    sd_tr = np.sqrt(var(bs) + var(bb)) / (1 / bs - 1 / bb)
    assert abs(est.grad_sq_norm - true_g2) <= 4 * sd_g2
    assert abs(est.trace_cov - true_tr) <= 4 * sd_tr
    assert est.b_simple == pytest.approx(true_tr / true_g2, rel=4 * (sd_tr / true_tr + sd_g2 / true_g2))
    # exact algebra on expectations
    e = noise_scale_two_batch(true_g2 + true_tr / bs, [true_g2 + true_tr / bb], bs, bb)
    assert e.grad_sq_norm == pytest.approx(true_g2) and e.trace_cov == pytest.approx(true_tr)
    with pytest.raises(ValueError):
        noise_scale_two_batch(1.0, 1.0, 8, 8)


def test_gradient_snr_per_layer():
    rng, G, sd = setup(2)
    N = 20000
    a = (G[:20] + sd[:20] * rng.standard_normal((N, 20))).reshape(N, 4, 5)  # layer shape flattened
    b = 10 * G[20:] + sd[20:] * rng.standard_normal((N, 20))
    true = {"a": (G[:20] @ G[:20]) / (sd[:20] @ sd[:20]), "b": 100 * (G[20:] @ G[20:]) / (sd[20:] @ sd[20:])}
    snr = gradient_snr({"a": a, "b": torch.tensor(b)})
    assert set(snr) == {"a", "b"}
    for k in snr:
        assert snr[k] == pytest.approx(true[k], rel=0.05)
    lst = gradient_snr([a, b], debias=True)
    assert lst[0] == pytest.approx(true["a"], rel=0.05)
    assert gradient_snr(a) == pytest.approx(1 / gradient_noise_scale(a.reshape(N, -1)).b_simple, rel=1e-2)


def _psd(d, k, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    ev = np.sort(rng.uniform(0.1, 1.0, d))[::-1]
    ev[:k] *= 10
    return Q, ev, (Q * ev) @ Q.T


def test_alignment_is_one_when_cov_is_hessian_over_batch():
    d, k, B = 30, 5, 16
    Q, ev, H = _psd(d, k, 3)
    V = Q[:, :k]
    al = covariance_hessian_alignment(diag_cov=np.diag(H) / B, diag_hessian=np.diag(H), eigvecs=V,
                                      hessian_eigvals=ev[:k], cov_matvec=lambda W: H @ W / B)
    for f in ("diag_cosine", "diag_pearson", "proj_cosine", "proj_diag_cosine", "proj_diag_pearson"):
        assert getattr(al, f) == pytest.approx(1.0, abs=1e-12), f
    # from noise samples of C = H / B: sampling error of a 5x5 sample covariance ~ sqrt(2/N)
    rng = np.random.default_rng(4)
    noise = rng.standard_normal((20000, d)) @ (Q * np.sqrt(ev / B)).T
    al = covariance_hessian_alignment(noise=torch.tensor(noise), diag_hessian=np.diag(H), eigvecs=V,
                                      hessian_proj=V.T @ H @ V)
    assert al.proj_cosine > 0.99 and al.diag_cosine > 0.99 and al.diag_pearson > 0.9
    assert al.vcv.shape == (k, k)
    # anti-aligned spectrum (C large where H is small): the diagonals' correlation turns negative;
    # the Frobenius cosine of positive diagonals stays positive (it is dominated by the overall
    # scale, which is why the Pearson correlation is reported too)
    C = (Q * ev[::-1]) @ Q.T
    al = covariance_hessian_alignment(eigvecs=V, hessian_eigvals=ev[:k], cov_matvec=lambda W: C @ W)
    assert al.proj_diag_pearson < 0 and al.proj_cosine < 0.99 and al.diag_cosine is None
    al = covariance_hessian_alignment(eigvecs=V, hessian_eigvals=ev[:k], cov_matvec=lambda W: W)
    assert al.proj_cosine == pytest.approx(ev[:k].sum() / np.sqrt(k * (ev[:k] ** 2).sum()))
    # two directions: their diagonals' correlation would be ±1 whatever C is, so there is none
    two = covariance_hessian_alignment(eigvecs=V[:, :2], hessian_eigvals=ev[:2], cov_matvec=lambda W: C @ W)
    assert two.proj_diag_pearson is None and two.proj_cosine is not None


def test_msd_exponent():
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.standard_normal((4000, 20)), axis=0)
    r = mean_squared_displacement(walk)
    assert r.exponent == pytest.approx(1.0, abs=0.05)
    # random walk: MSD(tau) = d * tau exactly in expectation
    assert r.prefactor == pytest.approx(20.0, rel=0.15)
    drift = np.arange(200)[:, None] * np.ones((1, 3))
    r = mean_squared_displacement(torch.tensor(drift), lags=[1, 2, 4, 8])
    assert r.exponent == pytest.approx(2.0) and r.msd[0] == pytest.approx(3.0)


def test_snr_from_running_sums_equals_snr_of_samples():
    from sgdexp.stats import gradient_snr, gradient_snr_from_sums

    rng = np.random.default_rng(5)
    g = rng.normal(0.3, 1.0, size=(50, 40))
    expected = gradient_snr(g)
    assert gradient_snr_from_sums(g.sum(0), float((g ** 2).sum()), 50) == pytest.approx(expected, rel=1e-10)
