"""Tests of sgdexp.noise.generators (CPU, fixed seeds).

Statistical checks compare an estimate with its exact value using a tolerance of Z standard
errors, the standard error coming from the sampling distribution of the estimator:
  * autocovariances: each column (coordinate) is an independent stream, so the per-column
    time averages of x_t x_{t+k} are i.i.d. unbiased estimates (the mean is known to be 0);
    their across-column standard deviation / sqrt(#columns) is the standard error of the mean
    (valid for long memory too, where the per-column estimate is noisy but still unbiased);
  * quantiles: asymptotic standard error sqrt(p(1-p)/n) / f(q);
  * KS tests: p > 0.01 at a fixed seed.
Z = 5 (two-sided false-alarm probability ~6e-7 per comparison under a normal approximation,
so with ~200 comparisons in this file a failure means a real discrepancy, not bad luck).
"""
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from sgdexp.noise import (
    AntiCorrelatedNoise,
    NoiseSource,
    StableNoise,
    StreamingFGN,
    WhiteNoise,
    fgn_autocovariance,
    fit_streaming_fgn,
    fractional_gaussian_noise,
    splitmix64,
    symmetric_alpha_stable,
)
from sgdexp.noise import generators
from sgdexp.noise.generators import _sas_from_bits

Z = 5.0
HURSTS = [round(0.1 * i, 1) for i in range(1, 10)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def acov_by_column(x: torch.Tensor, lags):
    """(estimate, standard error) of E[x_t x_{t+k}] for each k from x of shape (T, columns)."""
    x = x.double().reshape(x.shape[0], -1)
    est, se = [], []
    for k in lags:
        per_col = (x[: x.shape[0] - k] * x[k:]).mean(dim=0)
        est.append(per_col.mean().item())
        se.append(per_col.std().item() / math.sqrt(per_col.numel()))
    return np.array(est), np.array(se)


# ----------------------------------------------------------------------------------------------
# exact fGn (Davies-Harte)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hurst", [0.2, 0.5, 0.8])
def test_exact_fgn_autocovariance(hurst, dtype):
    # 300 steps (not a power of two: exercises the 2^a 3^b 5^c embedding size) x 4000 streams
    x = fractional_gaussian_noise(300, hurst, 4000, generator=gen(1), dtype=dtype)
    assert x.shape == (300, 4000) and x.dtype == dtype
    lags = list(range(11))
    est, se = acov_by_column(x, lags)
    exact = fgn_autocovariance(lags, hurst)
    # tolerance: Z standard errors (see module docstring) + float32 rounding of the products
    assert np.all(np.abs(est - exact) <= Z * se + 1e-5), (est - exact) / se
    assert abs(est[0] - 1.0) <= Z * se[0] + 1e-5  # unit variance


def test_exact_fgn_long_lags_and_stream_independence():
    hurst = 0.8
    x = fractional_gaussian_noise(2048, hurst, 1000, generator=gen(2), dtype=torch.float64)
    lags = [100, 500, 1000]
    est, se = acov_by_column(x, lags)
    assert np.all(np.abs(est - fgn_autocovariance(lags, hurst)) <= Z * se)
    # streams 2p and 2p+1 come from the real and imaginary parts of one FFT: they must be
    # independent. Per pair, the time average of x_t^(2p) x_t^(2p+1) has mean 0.
    cross = (x[:, 0::2] * x[:, 1::2]).mean(dim=0)
    assert abs(cross.mean().item()) <= Z * cross.std().item() / math.sqrt(cross.numel())
    # ...and also at a lag (cross-covariance of the pair at lag 1 and -1)
    for a, b in ((x[1:, 0::2], x[:-1, 1::2]), (x[:-1, 0::2], x[1:, 1::2])):
        c = (a * b).mean(dim=0)
        assert abs(c.mean().item()) <= Z * c.std().item() / math.sqrt(c.numel())


def test_exact_fgn_shapes_and_edge_sizes():
    x = fractional_gaussian_noise(7, 0.3, (3, 5), generator=gen(0), dtype=torch.float64)
    assert x.shape == (7, 3, 5) and x.dtype == torch.float64 and x.is_contiguous()
    assert fractional_gaussian_noise(1, 0.7, 3, generator=gen(0)).shape == (1, 3)
    assert fractional_gaussian_noise(2, 0.7, 1, generator=gen(0)).shape == (2, 1)
    assert fractional_gaussian_noise(0, 0.7, 4).shape == (0, 4)
    assert fractional_gaussian_noise(5, 0.7, 0).shape == (5, 0)
    # an odd number of columns: the last one is the real part of an unpaired FFT
    x = fractional_gaussian_noise(64, 0.7, 9, generator=gen(3))
    assert torch.isfinite(x).all() and x[:, -1].abs().sum() > 0


def test_exact_fgn_determinism():
    a = fractional_gaussian_noise(100, 0.3, 11, generator=gen(5))
    b = fractional_gaussian_noise(100, 0.3, 11, generator=gen(5))
    c = fractional_gaussian_noise(100, 0.3, 11, generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.2, 1.5, float("nan"), float("inf"), "0.5", True, None])
def test_bad_hurst_raises(bad):
    with pytest.raises(ValueError, match="hurst") as info:
        fractional_gaussian_noise(10, bad, 3)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="hurst"):
        StreamingFGN(bad, 3)
    with pytest.raises(ValueError, match="hurst"):
        fgn_autocovariance([1], bad)


def test_bad_dtype_and_size_raise():
    with pytest.raises(ValueError, match="dtype"):
        fractional_gaussian_noise(10, 0.3, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="size"):
        symmetric_alpha_stable(1.5, -3)
    with pytest.raises(ValueError, match="n_steps"):
        fractional_gaussian_noise(-1, 0.3, 3)


# ----------------------------------------------------------------------------------------------
# streaming fGn
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hurst", HURSTS)
def test_streaming_theoretical_autocovariance(hurst):
    """The fitted model's exact stationary autocovariance vs the exact fGn one (brief: <= 0.01)."""
    fit = fit_streaming_fgn(hurst)
    assert fit.n_factors <= 32
    lags = np.arange(1, 1001)
    err = np.abs(fit.autocovariance(lags) - fgn_autocovariance(lags, hurst))
    assert err.max() <= 0.01
    assert err.max() == pytest.approx(fit.max_abs_error, abs=1e-15)
    assert abs(fit.autocovariance([0])[0] - 1.0) <= 1e-3
    # as fitted at the default K = 16 the error is far below the requirement
    assert fit.max_abs_error <= 1e-3
    # the rates are float32 numbers, so a float32 source runs exactly the fitted model
    assert np.array_equal(fit.rho.astype(np.float32).astype(np.float64), fit.rho)


@pytest.mark.parametrize("hurst", [0.3, 0.8])
def test_streaming_autocovariance_formula_is_the_filter_autocovariance(hurst):
    """The closed-form model autocovariance equals sum_m psi_m psi_{m+k} of its impulse response."""
    fit = fit_streaming_fgn(hurst, n_factors=8, max_lag=50)  # time scales up to 1000 steps
    n = 1 << 17  # rho_max^n ~ exp(-131): truncation negligible
    k = np.arange(1, n, dtype=np.float64)
    psi = np.concatenate([[fit.beta], (fit.rho[None, :] ** (k[:, None] - 1)) @ fit.kappa])
    spec = np.abs(np.fft.rfft(psi, 2 * n)) ** 2
    acov = np.fft.irfft(spec, 2 * n)[:61]
    assert np.allclose(fit.autocovariance(np.arange(61)), acov, rtol=0, atol=1e-9)


def _draw(source, steps):
    return torch.stack([source.sample() for _ in range(steps)])


@pytest.mark.parametrize("hurst,dtype", [(0.2, torch.float32), (0.7, torch.float64), (0.9, torch.float32)])
def test_streaming_monte_carlo_autocovariance(hurst, dtype):
    src = StreamingFGN(hurst, 2000, generator=gen(11), dtype=dtype)
    x = _draw(src, 4000)
    assert x.dtype == dtype and x.shape == (4000, 2000)
    lags = [0, 1, 2, 5, 10, 100]
    est, se = acov_by_column(x, lags)
    model = src.autocovariance(lags)
    assert np.all(np.abs(est - model) <= Z * se + 1e-5), (est - model) / se
    # and the model is the fGn autocovariance to within 1e-3 (theory test above)
    assert np.all(np.abs(model - fgn_autocovariance(lags, hurst)) <= 1e-3)


@pytest.mark.parametrize("hurst", [0.2, 0.8])
def test_streaming_starts_stationary(hurst):
    """Var(x_0 + ... + x_99) = 100^{2H} for fGn (fBm variance); a cold start would miss it."""
    d = 20000
    src = StreamingFGN(hurst, d, generator=gen(12), dtype=torch.float64)
    x = _draw(src, 100)
    # exact variance of the sum under the model (differs from 100^{2H} by < 1e-2 relative)
    k = np.arange(1, 100)
    model_var = 100 * src.autocovariance([0])[0] + 2 * np.sum((100 - k) * src.autocovariance(k))
    assert model_var == pytest.approx(100 ** (2 * hurst), rel=1e-2)
    s = x.sum(dim=0) / math.sqrt(model_var)  # ~ N(0, 1) per coordinate
    # variance of the sample variance of d normals: 2/d
    assert abs(s.var().item() - 1.0) <= Z * math.sqrt(2.0 / d)
    # first sample alone: variance 1 and lag-1 covariance gamma(1)
    est, se = acov_by_column(x[:2], [0, 1])
    assert np.all(np.abs(est - src.autocovariance([0, 1])) <= Z * se)


def test_streaming_half_is_white_noise():
    src = StreamingFGN(0.5, 2000, generator=gen(13))
    assert src.tensor_bytes() == 0
    x = _draw(src, 50).double()
    flat = x.flatten().numpy()
    assert stats.kstest(flat, "norm").pvalue > 0.01
    # lag-1 correlation: standard error 1/sqrt(N) for white noise
    r = (x[1:] * x[:-1]).mean().item() / x.var().item()
    assert abs(r) <= 3.0 / math.sqrt(x[1:].numel())
    assert np.all(src.autocovariance(np.arange(1, 100)) == 0.0)


@pytest.mark.parametrize("n_factors", [16, 32])
def test_streaming_memory_is_flat_and_bounded(n_factors):
    d = 1000
    src = StreamingFGN(0.7, d, generator=gen(14), n_factors=n_factors)
    before = src.tensor_bytes()
    for _ in range(3000):
        src.sample()
    assert src.tensor_bytes() == before
    assert before // 4 <= 32 * d + 64  # elements (float32): K*d factor state + 2K coefficients


def test_streaming_state_dict_round_trip():
    g = gen(15)
    src = StreamingFGN(0.3, (4, 5), generator=g)
    for _ in range(10):
        src.sample()
    state, g_state = src.state_dict(), g.get_state()
    assert all(isinstance(v, (torch.Tensor, int, float)) for v in state.values())
    expected = _draw(src, 5)

    g2 = gen(999)
    other = StreamingFGN(0.3, (4, 5), generator=g2)
    other.load_state_dict(state)
    g2.set_state(g_state)
    assert torch.equal(_draw(other, 5), expected)
    assert other.steps == src.steps == 15
    # the checkpoint is a copy: drawing more did not change it
    assert not torch.equal(state["factors"], src.state_dict()["factors"])

    with pytest.raises(ValueError, match="hurst"):
        StreamingFGN(0.4, (4, 5), generator=gen(0)).load_state_dict(state)
    with pytest.raises(ValueError, match="numel"):
        StreamingFGN(0.3, 21, generator=gen(0)).load_state_dict(state)


def test_streaming_bad_arguments():
    with pytest.raises(ValueError, match="n_factors"):
        StreamingFGN(0.3, 4, n_factors=33)
    with pytest.raises(ValueError, match="n_factors"):
        StreamingFGN(0.3, 4, n_factors=2)
    with pytest.raises(ValueError, match="max_lag"):
        StreamingFGN(0.3, 4, max_lag=0)


# ----------------------------------------------------------------------------------------------
# symmetric alpha-stable
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.7, 1.2, 1.5, 1.8])
def test_sas_quantiles_match_scipy(alpha, dtype):
    n = 200_000
    x = symmetric_alpha_stable(alpha, n, generator=gen(21), dtype=dtype).double().numpy()
    p = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    # S1 and S0 parameterisations coincide for beta = 0; scale 1 <-> exp(-|t|^alpha)
    q = stats.levy_stable.ppf(p, alpha, 0.0, loc=0.0, scale=1.0)
    q[2] = 0.0  # the median of a symmetric law
    f = stats.levy_stable.pdf(q, alpha, 0.0)
    se = np.sqrt(p * (1 - p) / n) / f  # asymptotic standard error of the sample quantile
    assert np.all(np.abs(np.quantile(x, p) - q) <= Z * se), (np.quantile(x, p) - q) / se


def test_sas_alpha2_is_normal_with_variance_2():
    x = symmetric_alpha_stable(2.0, 50_000, generator=gen(22), dtype=torch.float64).numpy()
    assert stats.kstest(x, stats.norm(scale=math.sqrt(2.0)).cdf).pvalue > 0.01


def test_sas_alpha1_is_cauchy():
    x = symmetric_alpha_stable(1.0, 50_000, generator=gen(23)).double().numpy()
    assert stats.kstest(x, "cauchy").pvalue > 0.01


def test_sas_near_one_is_continuous_in_alpha():
    # CMS has no singularity at alpha = 1 in the symmetric case
    x = symmetric_alpha_stable(1.0 + 1e-9, 50_000, generator=gen(24)).double().numpy()
    assert stats.kstest(x, "cauchy").pvalue > 0.01


def splitmix64_reference(seed: int, n: int):
    """SplitMix64 as in Steele, Lea & Flood's reference C code, on Python integers."""
    mask, out, state = (1 << 64) - 1, [], seed
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append(z - (1 << 64) if z >> 63 else z)  # as int64
    return out


@pytest.mark.parametrize("seed", [0, 1234567, (1 << 63) - 1])
def test_splitmix64_matches_the_reference_bit_for_bit(seed):
    assert splitmix64(torch.tensor(seed), 1000).tolist() == splitmix64_reference(seed, 1000)
    assert splitmix64_reference(1234567, 1) == [6457827717110365317]  # the published first output


@pytest.mark.parametrize("dtype,min_alpha", [(torch.float32, 0.37), (torch.float64, 0.11)])
def test_sas_is_finite_on_the_extreme_random_words(dtype, min_alpha):
    # every combination of the extreme V (j = -2^p, -1, 0, 2^p - 1) and U (k = 0, 2^p - 1) grid
    # points; with uniforms that can be 0 (torch.rand) CMS returns inf about once in 2^23 draws
    p, top = (23, 41) if dtype == torch.float32 else (52, 12)
    js = [0, (1 << p) - 1, 1 << p, (1 << (p + 1)) - 1]  # the low p + 1 bits of the first word
    ks = [0, (1 << p) - 1]  # the top p bits of the last word
    signed = lambda w: w - (1 << 64) if w >> 63 else w  # noqa: E731
    words = [[signed(k << top) for j in js for k in ks]]
    if dtype == torch.float32:
        words = [[signed((k << top) | j) for j in js for k in ks]]
    else:
        words = [[j for j in js for k in ks], words[0]]
    bits = torch.tensor(words, dtype=torch.int64)
    for alpha in (min_alpha, 0.5, 0.9, 1.1, 1.5, 1.99):
        x = _sas_from_bits(bits, alpha, dtype)
        assert torch.isfinite(x).all() and (x != 0).all(), (alpha, x)


def test_compiled_white_noise_equals_its_eager_sampler():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to eager
        compiled = WhiteNoise(3000, generator=gen(28), compile=True).draw(7)
    eager = generators._gaussian_draw(generators._draw_key(gen(28), "cpu"), 7 * 3000, torch.float32).view(7, 3000)
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_compiled_stable_noise_equals_eager():
    # torch.compile fuses words and transform; the numbers must be the eager ones up to float32
    # rounding of the transcendental functions, for every alpha (alpha is a kernel input)
    for alpha in (0.7, 1.5):
        eager = StableNoise(alpha, 3000, generator=gen(27)).draw(7)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to eager
            source = StableNoise(alpha, 3000, generator=gen(27), compile=True)
            compiled = source.draw(7)
        assert source.compiled and generators._compiled(generators._sas_draw).compiled()
        assert torch.allclose(compiled, eager, rtol=1e-5, atol=0), ((compiled - eager).abs() / eager.abs()).max()


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, 2.0001, 3, float("nan"), "1.5", None])
def test_sas_bad_alpha_raises(bad):
    with pytest.raises(ValueError, match="alpha") as info:
        symmetric_alpha_stable(bad, 10)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.7, 1.0, 1.5, 2.0])
def test_sas_shape_dtype_determinism(alpha, dtype):
    a = symmetric_alpha_stable(alpha, (30, 7), generator=gen(25), dtype=dtype)
    b = symmetric_alpha_stable(alpha, (30, 7), generator=gen(25), dtype=dtype)
    assert a.shape == (30, 7) and a.dtype == dtype and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, symmetric_alpha_stable(alpha, (30, 7), generator=gen(26), dtype=dtype))


# ----------------------------------------------------------------------------------------------
# anti-correlated and white sources; the common interface
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [200_001, 2])
def test_box_muller_on_splitmix_words_is_standard_normal(n, dtype):
    # the compiled white and anti-correlated sources draw through this function
    x = generators._gaussian_draw(torch.tensor(12345), n, dtype)
    assert x.shape == (n,) and x.dtype == dtype and torch.isfinite(x).all()
    if n > 2:
        assert stats.kstest(x.double().numpy(), "norm").pvalue > 0.01
        assert abs(float(x.double().mean())) <= Z / math.sqrt(n)


@pytest.mark.parametrize("compile", [False, True])
def test_anticorrelated_moments(compile):
    src = AntiCorrelatedNoise(5000, generator=gen(31), dtype=torch.float64, compile=compile)
    x = _draw(src, 400)
    est, se = acov_by_column(x, [0, 1, 2, 3])
    # variance 2, lag-1 covariance -1 (correlation -1/2), zero beyond
    assert np.all(np.abs(est - np.array([2.0, -1.0, 0.0, 0.0])) <= Z * se), est
    assert abs(est[1] / est[0] + 0.5) <= 0.01
    # the first step is already stationary (previous w drawn at construction)
    first = AntiCorrelatedNoise(100_000, generator=gen(32), dtype=torch.float64).sample()
    assert abs(first.var().item() - 2.0) <= Z * 2.0 * math.sqrt(2.0 / first.numel())


SOURCES = {
    "white": lambda g, dt: WhiteNoise((3, 4), generator=g, dtype=dt),
    "anti": lambda g, dt: AntiCorrelatedNoise((3, 4), generator=g, dtype=dt),
    "white-compiled": lambda g, dt: WhiteNoise((3, 4), generator=g, dtype=dt, compile=True),
    "anti-compiled": lambda g, dt: AntiCorrelatedNoise((3, 4), generator=g, dtype=dt, compile=True),
    "fgn": lambda g, dt: StreamingFGN(0.7, (3, 4), generator=g, dtype=dt),
    "fgn-low": lambda g, dt: StreamingFGN(0.1, (3, 4), generator=g, dtype=dt, n_factors=32),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sources_common_interface(name, dtype):
    make = SOURCES[name]
    src, twin = make(gen(41), dtype), make(gen(41), dtype)
    assert isinstance(src, NoiseSource)
    x = src.sample()
    assert x.shape == (3, 4) and x.dtype == dtype and torch.isfinite(x).all()
    x.add_(1e9)  # the returned tensor is the caller's: changing it must not touch the state
    twin.sample()
    assert torch.equal(src.sample(), twin.sample())
    # determinism: same seed -> same stream
    a, b = _draw(make(gen(42), dtype), 20), _draw(make(gen(42), dtype), 20)
    assert torch.equal(a, b)
    assert not torch.equal(a, _draw(make(gen(43), dtype), 20))
    # checkpoint round trip (source state + generator state) resumes exactly
    g = gen(44)
    src = make(g, dtype)
    _draw(src, 3)
    state, g_state = src.state_dict(), g.get_state()
    assert all(isinstance(v, (torch.Tensor, int, float)) for v in state.values())
    expected = _draw(src, 4)
    g2 = gen(0)
    twin = make(g2, dtype)
    twin.load_state_dict(state)
    g2.set_state(g_state)
    assert torch.equal(_draw(twin, 4), expected)


def test_keyed_streams_depend_on_key_and_counter_alone():
    """One stream per replica: an index's key does not depend on the other indices drawn with it; the
    words of (key, counter) are SplitMix64 seeded with the counter's key, bit for bit; integers lie in
    [0, high); the Generator seeds are 63-bit and differ by counter."""
    from sgdexp.noise.generators import counter_keys, counter_seeds, keyed_integers, keyed_words, stream_keys

    every = stream_keys(42, torch.arange(100))
    some = stream_keys(42, torch.tensor([97, 3]))
    assert some.tolist() == [every[97].item(), every[3].item()] and len(set(every.tolist())) == 100
    words = keyed_words(some, 5, 40)
    for row, key in zip(words.tolist(), counter_keys(some, 5).tolist()):
        assert row == splitmix64_reference(key & (2**64 - 1), 40)
    assert not torch.equal(words, keyed_words(some, 6, 40))
    ints = keyed_integers(every, 0, 1000, 7)
    assert ints.shape == (100, 1000) and ints.min() == 0 and ints.max() == 6
    seeds = counter_seeds(some, 0) + counter_seeds(some, 1)
    assert all(0 <= s < 2**63 for s in seeds) and len(set(seeds)) == 4
