"""MSD and diffusion exponent against known exponents and against the definition."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdexp.noise import fractional_gaussian_noise
from sgdexp.stats import crossover, diffusion_exponent, local_exponents, log_lags, mean_squared_displacement, msd
from sgdexp.stats.diffusion import _msd_direct, _msd_fft, _trajectory


def msd_by_definition(x: np.ndarray, lags) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return np.array([((x[t:] - x[: len(x) - t]) ** 2).sum() / (len(x) - t) for t in lags])


@pytest.mark.parametrize("shape", [(300, 7), (257, 3, 2), (50,)])
def test_msd_equals_the_definition_by_both_algorithms(shape):
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal(shape), axis=0) + 5.0  # an offset: centring must not matter
    lags = np.arange(0, shape[0])
    exact = msd_by_definition(x, lags)
    X = _trajectory(x)
    for computed in (_msd_direct(X, lags), _msd_fft(X, lags), msd(x, lags), msd(torch.tensor(x), lags)):
        np.testing.assert_allclose(computed[1:], exact[1:], rtol=1e-10)
        assert computed[0] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(msd(x), exact[1:], rtol=1e-10)  # default: all lags 1..T-1


@pytest.mark.parametrize("stride", [2, 7])
def test_strided_msd_equals_the_definition_over_its_origins(stride):
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.standard_normal((200, 5)), axis=0) + 3.0
    lags = np.array([0, 1, 5, 50, 199])
    exact = [np.mean([((x[t + tau] - x[t]) ** 2).sum() for t in range(0, 200 - tau, stride)]) for tau in lags]
    np.testing.assert_allclose(msd(x, lags, stride=stride), exact, rtol=1e-10, atol=1e-9)
    # float32 (the diffusion analysis' ring) is differenced as it is: float32 rounding of the positions only
    x32 = x.astype(np.float32)
    exact32 = [np.mean([((x32[t + tau].astype(float) - x32[t]) ** 2).sum() for t in range(0, 200 - tau, stride)])
               for tau in lags]
    for trajectory in (x32, torch.from_numpy(x32)):
        np.testing.assert_allclose(msd(trajectory, lags, stride=stride), exact32, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="stride"):
        msd(x, lags, stride=0)


def test_gaussian_random_walk_has_exponent_one():
    rng = np.random.default_rng(2)
    walk = np.cumsum(rng.standard_normal((4096, 50)), axis=0)
    r = diffusion_exponent(walk)
    assert r.exponent == pytest.approx(1.0, abs=0.05)
    assert r.prefactor == pytest.approx(50.0, rel=0.15)  # MSD(τ) = d τ
    assert np.nanmax(np.abs(r.local - 1.0)) < 0.15


@pytest.mark.parametrize("hurst", [0.3, 0.7])
def test_fbm_has_exponent_two_hurst(hurst):
    g = torch.Generator().manual_seed(3)
    path = torch.cumsum(fractional_gaussian_noise(4096, hurst, 50, generator=g, dtype=torch.float64), dim=0)
    r = diffusion_exponent(path)
    assert r.exponent == pytest.approx(2 * hurst, abs=0.05)


def test_ballistic_motion_has_exponent_two():
    t = np.arange(1000.0)[:, None]
    r = diffusion_exponent(t * np.array([[0.3, -1.0, 2.0]]))
    assert r.exponent == pytest.approx(2.0, abs=1e-6)
    np.testing.assert_allclose(r.local, 2.0, atol=1e-6)


def test_crossover_from_super_to_sub_diffusion():
    # MSD = τ^1.5 up to τ = 100, then ∝ τ^0.5: the local exponent crosses 1 at 100 (log-midpoint)
    lags = np.unique(np.round(np.geomspace(1, 10_000, 60)))
    values = np.where(lags <= 100, lags ** 1.5, 1000.0 * (lags / 100) ** 0.5)
    local = local_exponents(lags, values)
    assert local[0] == pytest.approx(1.5) and local[-1] == pytest.approx(0.5)
    assert crossover(lags, local) == pytest.approx(100, rel=0.15)
    assert np.isnan(crossover(lags, np.full(len(lags), 0.8)))  # never super-diffusive
    assert np.isnan(crossover(lags, np.full(len(lags), 1.3)))  # not yet sub-diffusive
    noisy = local.copy()
    noisy[2] = 0.5  # a dip at short lags that recovers is not the crossover
    assert crossover(lags, noisy) == pytest.approx(100, rel=0.15)


def test_old_interface_keeps_working():
    drift = np.arange(200)[:, None] * np.ones((1, 3))
    r = mean_squared_displacement(torch.tensor(drift), lags=[1, 2, 4, 8])
    assert r.exponent == pytest.approx(2.0) and r.msd[0] == pytest.approx(3.0)


def test_msd_leaves_its_input_unchanged():
    """The trajectory is centred in place only when it was converted (a copy of ours)."""
    x32 = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) + 2.0
    inputs = [x32, x32.double(), x32.numpy().copy(), x32.numpy().astype(np.float64)]
    as_array = lambda t: t.numpy().astype(np.float64) if isinstance(t, torch.Tensor) else t.astype(np.float64)  # noqa: E731
    before = [as_array(t) for t in inputs]
    results = [msd(t, [1, 2, 7]) for t in inputs]
    for t, b in zip(inputs, before):
        np.testing.assert_array_equal(as_array(t), b)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_windowed_msd_streams_what_msd_gives_on_each_window(stride):
    # 4.6 windows of 64 records, fed in blocks of uneven sizes (1 to 23) that straddle the window
    # boundaries: each completed window's MSD is msd() of its records with the same origins
    from sgdexp.stats import WindowedMSD

    rng = np.random.default_rng(7)
    x = torch.from_numpy(np.cumsum(rng.standard_normal((295, 6)), axis=0))
    lags = log_lags(16, 8)
    streamed = WindowedMSD(lags, window=64, stride=stride, dim=6, dtype=torch.float64)
    windows, start = [], 0
    while start < len(x):
        size = int(rng.integers(1, 24))
        windows += streamed.update(x[start: start + size])
        start += size
    assert [n for n, _ in windows] == [64] * 4
    for w, (_, values) in enumerate(windows):
        np.testing.assert_allclose(values, msd(x[64 * w: 64 * (w + 1)], lags, stride=stride), rtol=1e-12)
    partial = x[256:]  # 39 records in progress: lags up to 9
    got_lags, got = streamed.current()
    np.testing.assert_array_equal(got_lags, lags[lags <= 39 // 4])
    np.testing.assert_allclose(got, msd(partial, got_lags, stride=stride), rtol=1e-12)
    # its state is what it keeps: a copy resumes to the same numbers
    copy = WindowedMSD(lags, window=64, stride=stride, dim=6, dtype=torch.float64)
    copy.load_state_dict(streamed.state_dict())
    more = torch.from_numpy(np.cumsum(rng.standard_normal((40, 6)), axis=0)) + x[-1]
    (_, a), = streamed.update(more)
    (_, b), = copy.update(more)
    np.testing.assert_array_equal(a, b)
    assert streamed.n_origins <= (16 + 23) // stride + 1  # the origins of the last max(lags) records and a block
