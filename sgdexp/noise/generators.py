"""Noise generators for the noise-injection modes: the zeta_t in theta <- theta - eta*grad - eta*sigma*zeta_t.

Everything here is seeded by an optional ``torch.Generator`` (the caller owns it and checkpoints
its state), works on any device, and produces ``torch.float32`` or ``torch.float64`` tensors
(``dtype=``). Shapes are ``size`` (an int or a tuple of ints).

One-shot samplers
    * :func:`fractional_gaussian_noise` -- exact fractional Gaussian noise (Davies--Harte).
    * :func:`symmetric_alpha_stable` -- symmetric alpha-stable variates (Chambers--Mallows--Stuck).
    * :func:`splitmix64` -- counter-based 64-bit random words (the SαS sampler's bits).

Keyed streams (one stream per replica, stateless: a draw is a function of (key, counter) alone)
    * :func:`stream_keys` -- one 64-bit key per index (a global replica number) from a base key.
    * :func:`keyed_words` / :func:`keyed_integers` -- (R, n) words / integers of every key's stream
      at one counter (a step or an epoch), all keys at once.
    * :func:`counter_seeds` -- one 63-bit ``torch.Generator`` seed per key and counter, for draws
      torch makes faster than our own words (``sgdexp.replicas.ReplicaStreams``).

Stateful sources (one step per :meth:`NoiseSource.sample` call, checkpointable)
    * :class:`WhiteNoise` -- i.i.d. N(0, 1).
    * :class:`StableNoise` -- i.i.d. SαS.
    The i.i.d. sources draw in blocks and take ``compile=True`` (CPU): a ``torch.compile``d
    sampler on :func:`splitmix64` words (see :class:`BlockedIID`).
    * :class:`AntiCorrelatedNoise` -- w_t - w_{t-1}, w i.i.d. N(0, I).
    * :class:`StreamingFGN` -- fractional Gaussian noise, one step at a time, O(K*d) memory
      (Markovian multi-factor approximation, see :func:`fit_streaming_fgn`).

Analysis helpers
    * :func:`fgn_autocovariance` -- the exact fGn autocovariance.
    * :func:`fit_streaming_fgn` / :class:`StreamingFGNFit` -- the fitted Markovian model and its
      exact (theoretical) autocovariance.

Conventions
    fGn with Hurst index H in (0, 1) has unit variance and autocovariance
    gamma(k) = (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H}) / 2; H = 0.5 is white noise.
    SalphaS has characteristic function exp(-|t|^alpha) (unit scale), so alpha = 2 is N(0, 2).
"""
from __future__ import annotations

import abc
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from sgdexp.compiling import compile_or_eager
from sgdexp.errors import ConfigError

__all__ = [
    "NoiseSource",
    "BlockedIID",
    "WhiteNoise",
    "StableNoise",
    "AntiCorrelatedNoise",
    "StreamingFGN",
    "StreamingFGNFit",
    "fit_streaming_fgn",
    "fgn_autocovariance",
    "fractional_gaussian_noise",
    "symmetric_alpha_stable",
    "splitmix64",
    "splitmix64_mix",
    "stream_keys",
    "counter_keys",
    "counter_seeds",
    "keyed_words",
    "keyed_integers",
    "shift_right_logical",
    "SPLITMIX64_GAMMA",
]

Size = Union[int, Sequence[int]]
StateDict = Dict[str, Union[torch.Tensor, int, float]]

_DTYPES = (torch.float32, torch.float64)
_MAX_FACTORS = 32
_MAX_LAG = 100_000  # slowest factor time scale 20 * max_lag = 2e6 steps keeps rho < 1 in float32


# ----------------------------------------------------------------------------------------------
# argument checking
# ----------------------------------------------------------------------------------------------
def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_hurst(hurst) -> float:
    if not _is_real(hurst) or not (0.0 < float(hurst) < 1.0):
        raise ConfigError("hurst", hurst, "a number strictly between 0 and 1 (0.5 is white noise)")
    return float(hurst)


def _check_alpha(alpha) -> float:
    if not _is_real(alpha) or not (0.0 < float(alpha) <= 2.0):
        raise ConfigError("alpha", alpha, "a number in (0, 2] (2 is Gaussian, 1 is Cauchy)")
    return float(alpha)


def _check_int(key: str, value, low: int, high: Optional[int] = None) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        rng = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ConfigError(key, value, rng)
    return int(value)


def _check_shape(size: Size) -> Tuple[int, ...]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size,)
    try:
        shape = tuple(size)
    except TypeError:
        raise ConfigError("size", size, "a non-negative int or a tuple of them") from None
    for s in shape:
        if not (isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0):
            raise ConfigError("size", size, "a non-negative int or a tuple of them")
    return tuple(int(s) for s in shape)


def _check_dtype(dtype) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ConfigError("dtype", dtype, "torch.float32 or torch.float64")
    return dtype


def _resolve_device(device, generator: Optional[torch.Generator]) -> torch.device:
    """``device`` if given, else the generator's device, else torch's default device."""
    if device is not None:
        return torch.device(device)
    if generator is not None:
        return generator.device
    return torch.get_default_device()


# ----------------------------------------------------------------------------------------------
# exact fGn
# ----------------------------------------------------------------------------------------------
def fgn_autocovariance(lags, hurst: float) -> np.ndarray:
    """Exact autocovariance of unit-variance fractional Gaussian noise (float64 numpy array).

    ``gamma(k) = (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H}) / 2`` evaluated at ``lags`` (array-like or
    tensor). Exact to float64 rounding; for H != 0.5, gamma(k) ~ H(2H-1)|k|^{2H-2} at large k.
    """
    h2 = 2.0 * _check_hurst(hurst)
    if isinstance(lags, torch.Tensor):
        lags = lags.detach().cpu().numpy()
    k = np.abs(np.asarray(lags, dtype=np.float64))
    return 0.5 * ((k + 1.0) ** h2 - 2.0 * k**h2 + np.abs(k - 1.0) ** h2)


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT sizes that pocketfft/cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=32)
def _davies_harte_scale(n_steps: int, hurst: float) -> np.ndarray:
    """sqrt(lambda_k / m) for the circulant embedding (size m = 2N, N >= n_steps - 1) of fGn.

    The eigenvalues of the embedding of the fGn covariance are non-negative for every
    H in (0, 1) (Craigmile 2003), so the method is exact; rounding-level negatives are clipped.
    """
    big = _next_fast_len(max(n_steps - 1, 1))
    gam = fgn_autocovariance(np.arange(big + 1), hurst)
    row = np.concatenate([gam, gam[-2:0:-1]])  # length m = 2*big, symmetric
    lam = np.fft.fft(row).real
    if lam.min() < -1e-8 * lam.max():
        raise RuntimeError(f"Davies-Harte embedding not non-negative (hurst={hurst}, n={n_steps})")
    scale = np.sqrt(np.clip(lam, 0.0, None) / row.size)
    scale.setflags(write=False)
    return scale


def fractional_gaussian_noise(
    n_steps: int,
    hurst: float,
    size: Size,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """Exact fractional Gaussian noise: ``size`` independent unit-variance streams of ``n_steps``.

    Returns a tensor of shape ``(n_steps, size)`` (``(n_steps, *size)`` for a tuple ``size``):
    row t is step t of every stream, each column an independent fGn path with autocovariance
    :func:`fgn_autocovariance`.

    Method: Davies--Harte circulant embedding. The covariance row is embedded in a circulant of
    size m = 2N (N >= n_steps - 1 an FFT-friendly length) whose eigenvalues lambda >= 0 are
    computed once in float64; each pair of streams is the real and imaginary part of
    ``fft(sqrt(lambda/m) * (Z1 + i Z2))`` (Z1, Z2 i.i.d. N(0, I)), all on ``device`` via
    ``torch.fft``. Columns are processed in chunks to bound memory: 2^20 complex numbers of
    scratch (16 MB in float32) or one pair of streams if m is larger, besides the output.

    Error: the method is exact in distribution; the only errors are floating-point rounding
    of the FFT (~1e-6 in float32, ~1e-15 in float64). H = 0.5 returns ``torch.randn`` directly.
    Cost: m = 2N normal draws and one length-m complex FFT per pair of streams, O(size * n log n).
    Raises ``ValueError`` (a :class:`~sgdexp.errors.ConfigError`) naming ``hurst`` unless
    0 < hurst < 1.
    """
    hurst = _check_hurst(hurst)
    n = _check_int("n_steps", n_steps, 0)
    shape = _check_shape(size)
    dtype = _check_dtype(dtype)
    device = _resolve_device(device, generator)
    ncols = math.prod(shape)
    if n == 0 or ncols == 0 or hurst == 0.5:
        return torch.randn((n,) + shape, generator=generator, dtype=dtype, device=device)

    scale_np = _davies_harte_scale(n, hurst)
    m = scale_np.size
    scale = torch.tensor(scale_np.copy(), dtype=dtype, device=device).view(m, 1)
    out = torch.empty((n, ncols), dtype=dtype, device=device)
    pairs = (ncols + 1) // 2
    chunk = max(1, (1 << 20) // m)  # pairs per chunk: ~2^20 complex numbers of scratch
    for p0 in range(0, pairs, chunk):
        k = min(chunk, pairs - p0)
        z = torch.randn((k, m, 2), generator=generator, dtype=dtype, device=device).mul_(scale)
        y = torch.view_as_real(torch.fft.fft(torch.view_as_complex(z), dim=-1)[:, :n])  # 2k streams
        c0, c1 = 2 * p0, min(ncols, 2 * (p0 + k))
        full = (c1 - c0) // 2
        if full:
            out[:, c0 : c0 + 2 * full].view(n, full, 2).copy_(y[:full].transpose(0, 1))
        if (c1 - c0) % 2:
            out[:, c1 - 1].copy_(y[k - 1, :, 0])
    return out.view((n,) + shape)


# ----------------------------------------------------------------------------------------------
# symmetric alpha-stable
# ----------------------------------------------------------------------------------------------
def symmetric_alpha_stable(
    alpha: float,
    size: Size,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """I.i.d. symmetric alpha-stable variates with unit scale: E exp(itX) = exp(-|t|^alpha).

    Method: Chambers--Mallows--Stuck with V ~ U(-pi/2, pi/2), W = -log U ~ Exp(1),
    ``X = sin(alpha V) / cos(V)^{1/alpha} * (cos((1 - alpha) V) / W)^{(1 - alpha)/alpha}``,
    evaluated in ``dtype`` from 64-bit random words (:func:`splitmix64` keyed by one draw from
    ``generator``; see :func:`_sas_from_bits`). V and U lie on grids of 2^24 (float32) or 2^53
    (float64) points strictly inside their intervals, so W is never 0 or infinite, every draw is
    finite for alpha >= 0.37 in float32 and alpha >= 0.11 in float64, and cos V near +-pi/2 keeps
    full relative precision. alpha = 1 is Cauchy, ``tan(V)``; alpha = 2 is N(0, 2), drawn as
    ``sqrt(2) * randn``. Both are exact.

    Error: exact in distribution up to the grids of V and U and the rounding of the transform in
    ``dtype``. Below those alpha the largest draws exceed the float range and are +-inf. Raises
    ``ValueError`` (a :class:`~sgdexp.errors.ConfigError`) naming ``alpha`` unless 0 < alpha <= 2.
    """
    alpha = _check_alpha(alpha)
    shape = _check_shape(size)
    dtype = _check_dtype(dtype)
    device = _resolve_device(device, generator)
    if alpha == 2.0:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device).mul_(math.sqrt(2.0))
    bits = _random_words(_draw_key(generator, device), math.prod(shape), dtype)
    x = _cauchy_from_bits(bits, dtype) if alpha == 1.0 else _sas_from_bits(bits, alpha, dtype)
    return x.view(shape)


# 64-bit constants of SplitMix64 as the signed int64 values torch stores
SPLITMIX64_GAMMA, _MIX1, _MIX2 = (c - (1 << 64) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def shift_right_logical(x: torch.Tensor, k: int) -> torch.Tensor:
    """x >> k on int64 words as unsigned (torch's >> on int64 is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64_mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 words (a bijection of 64-bit words): with keys spaced
    by SPLITMIX64_GAMMA it makes counter-based streams (`splitmix64`, and the keyed streams below)."""
    z = (z ^ shift_right_logical(z, 30)).mul_(_MIX1)
    z = (z ^ shift_right_logical(z, 27)).mul_(_MIX2)
    return z ^ shift_right_logical(z, 31)


def splitmix64(key: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` outputs of SplitMix64 (Steele, Lea & Flood 2014) seeded with ``key``, as int64.

    Output i is mix(key + (i + 1) * gamma): counter-based, so the words are computed in parallel
    by elementwise integer operations on any device, and ``torch.compile`` fuses them with the
    transform that consumes them. Why our own: torch's CPU generator (mt19937) runs on one thread,
    about 2.8 ns per 64-bit word here; fused into the SαS kernel a word costs about 1 ns.
    SplitMix64 passes BigCrush; the outputs equal the reference C implementation's bit for bit
    (tested). Keys are random 63-bit numbers, so two draws of n words overlap with probability
    about 2n / 2^63.
    """
    return splitmix64_mix(torch.arange(1, n + 1, dtype=torch.int64, device=key.device).mul_(SPLITMIX64_GAMMA).add_(key))


# ----------------------------------------------------------------------------- keyed streams
COUNTER_GAMMA = 0x2545F4914F6CDD1D  # a second odd constant, so that counters and word indices never alias


def _wrap64(value: int) -> int:
    """A Python int as the signed int64 with the same low 64 bits (torch adds modulo 2^64)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def stream_keys(base_key: int, indices: torch.Tensor) -> torch.Tensor:
    """One 64-bit key (int64) per index: mix(index·γ + base_key). With a base key per seed and purpose
    (`sgdexp.seeding.derive_seed`), each index (a global replica number) has its own stream, whatever
    other indices are drawn beside it."""
    return splitmix64_mix(indices.to(torch.int64).mul(SPLITMIX64_GAMMA).add_(base_key))


def counter_keys(keys: torch.Tensor, counter: int) -> torch.Tensor:
    """mix(key + (counter + 1)·γ′) for each key: one key per (stream, counter)."""
    return splitmix64_mix(keys + _wrap64((counter + 1) * COUNTER_GAMMA))


def counter_seeds(keys: torch.Tensor, counter: int) -> list:
    """One 63-bit seed per key for ``torch.Generator.manual_seed``, a function of (key, counter) alone."""
    return counter_keys(keys, counter).bitwise_and_((1 << 63) - 1).tolist()


def keyed_words(keys: torch.Tensor, counter: int, n: int) -> torch.Tensor:
    """(R, n) SplitMix64 words: row r is the stream (:func:`splitmix64`) keyed by
    ``counter_keys(keys, counter)[r]``, so every (key, counter) pair has its own n words, computed for
    all keys at once."""
    z = torch.arange(1, n + 1, dtype=torch.int64, device=keys.device).mul_(SPLITMIX64_GAMMA)
    return splitmix64_mix(counter_keys(keys, counter)[:, None] + z)


def keyed_integers(keys: torch.Tensor, counter: int, n: int, high: int) -> torch.Tensor:
    """(R, n) integers in [0, high) from :func:`keyed_words` (31 random bits each: bias below high / 2^31)."""
    return shift_right_logical(keyed_words(keys, counter, n), 33) % high


def _draw_key(generator: Optional[torch.Generator], device) -> torch.Tensor:
    """One 63-bit key from ``generator``: the only state a draw consumes from it."""
    return torch.empty((), dtype=torch.int64, device=device).random_(generator=generator)


_GRID_BITS = {torch.float32: 23, torch.float64: 52}  # bits of the uniform grids built from random words


def _random_words(key: torch.Tensor, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """Random words for :func:`_sas_from_bits` and :func:`_gaussian_pairs`, shape (words, numel):
    one int64 per number (or Gaussian pair) in float32, two in float64."""
    words = 1 if dtype == torch.float32 else 2
    return splitmix64(key, words * numel).view(words, numel)


def _sas_angle(bits: torch.Tensor, dtype: torch.dtype):
    """(V / s, s, cos V) with V = (j + 1/2) s, s = (pi/2) / 2^p, j the low p + 1 bits of the
    first word less 2^p (p = 23 in float32, 52 in float64). The half-integers are exact in
    ``dtype``, so pi/2 - |V| = (2^p - |j + 1/2|) s has no cancellation and
    cos V = sin(pi/2 - |V|) keeps full relative precision in the tails."""
    p = _GRID_BITS[dtype]
    j = (bits[0] & ((1 << (p + 1)) - 1)).sub_(1 << p).to(dtype).add_(0.5)
    s = (math.pi / 2) / (1 << p)
    return j, s, j.abs().neg_().add_(1 << p).mul_(s).sin_()


def _sas_from_bits(bits: torch.Tensor, alpha, dtype: torch.dtype) -> torch.Tensor:
    """The CMS transform of :func:`symmetric_alpha_stable` on words from :func:`_random_words`;
    ``alpha`` in (0, 2) without 1, a float or a 0-d tensor (what the compiled kernel takes).

    U = (k + 1/2) / 2^p with k the top p bits of the last word, never 0 or 1, so W = -log U is
    finite and positive. With r = cos((1 - alpha) V) / (W cos V),
    X = sin(alpha V) r^{1/alpha} / (r cos V): one power instead of two.
    (In place where eager torch gains from it; ``torch.compile`` fuses it into one kernel either way.)
    """
    j, s, cos_v = _sas_angle(bits, dtype)
    p = _GRID_BITS[dtype]
    k = shift_right_logical(bits[-1], 64 - p)
    w = k.to(dtype).add_(0.5).mul_(1.0 / (1 << p)).log_().neg_()
    ratio = torch.mul(j, (1.0 - alpha) * s).cos_().div_(w.mul_(cos_v))
    x = j.mul_(alpha * s).sin_().mul_(torch.pow(ratio, 1.0 / alpha))
    return x.div_(ratio.mul_(cos_v))


def _cauchy_from_bits(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """alpha = 1: tan V = sign(V) cos(pi/2 - |V|) / cos V, from the same V as :func:`_sas_from_bits`."""
    j, s, cos_v = _sas_angle(bits, dtype)
    half_pi_minus_v = j.abs().neg_().add_(1 << _GRID_BITS[dtype]).mul_(s)
    return half_pi_minus_v.cos_().div_(cos_v).mul_(j.sign_())


def _sas_draw(key: torch.Tensor, numel: int, alpha, dtype: torch.dtype) -> torch.Tensor:
    """``numel`` SαS numbers (alpha not 1 or 2) from ``key``: words and transform in one function."""
    return _sas_from_bits(_random_words(key, numel, dtype), alpha, dtype)


@functools.lru_cache(maxsize=None)
def _compiled(draw):
    """``draw`` (:func:`_sas_draw` or :func:`_gaussian_draw`) as one ``torch.compile``d kernel.

    Why: the random words and the elementwise transform fuse into one vectorised loop over all
    cores (SαS: 2-3 ns instead of 8-12 ns per float32 number here; Gaussian: 0.4 ns against
    torch.randn's single-threaded 2.7 ns). No library offers fused samplers. Float parameters go
    in as 0-d tensors: with a Python float alpha, torch 2.14's on-disk graph cache served the
    kernel of one alpha for another."""
    return compile_or_eager(draw, f"sgdexp.noise.generators.{draw.__name__}", dynamic=True)


def _gaussian_pairs(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Box--Muller on words from :func:`_random_words`: 2 * words.shape[1] standard normals.

    U1 = (k1 + 1/2) / 2^p and U2 = (k2 + 1/2) / 2^p (p = 23 in float32: the low and the top bits
    of one word; 52 in float64: one word each) are never 0 or 1. R = sqrt(-2 log U1) is at most
    5.8 in float32, the cut of any 24-bit uniform (|N(0, 1)| exceeds it with probability 8e-9),
    and 8.6 in float64."""
    p = _GRID_BITS[dtype]
    k1 = words[0] & ((1 << p) - 1)
    k2 = shift_right_logical(words[-1], 64 - p)
    radius = torch.sqrt(-2.0 * torch.log((k1.to(dtype) + 0.5) * (1.0 / (1 << p))))
    angle = (k2.to(dtype) + 0.5) * (2.0 * math.pi / (1 << p))
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])


def _gaussian_draw(key: torch.Tensor, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """``numel`` i.i.d. N(0, 1) numbers from ``key`` (SplitMix64 words, Box--Muller)."""
    return _gaussian_pairs(_random_words(key, (numel + 1) // 2, dtype), dtype)[:numel]


# ----------------------------------------------------------------------------------------------
# stateful sources
# ----------------------------------------------------------------------------------------------
class NoiseSource(abc.ABC):
    """A stateful noise stream: ``sample()`` returns the next zeta_t, a tensor of shape ``shape``.

    Subclasses hold only their own state (previous draws, factor states); the
    ``torch.Generator`` they draw from is the caller's and is checkpointed by the caller.
    ``state_dict()`` returns tensors and plain numbers only; ``load_state_dict()`` restores them,
    so that (source state, generator state) together resume a stream exactly.

    Construction draws whatever initial state the stream needs from ``generator``, so the very
    first ``sample()`` is already a draw from the stationary distribution.
    """

    def __init__(
        self,
        size: Size,
        generator: Optional[torch.Generator] = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        self.shape: Tuple[int, ...] = _check_shape(size)
        self.numel: int = math.prod(self.shape)
        self.dtype: torch.dtype = _check_dtype(dtype)
        self.device: torch.device = _resolve_device(device, generator)
        self.generator = generator
        self.steps: int = 0

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def memory(self) -> Optional[np.ndarray]:
        """γ(0 … L), each coordinate's exact stationary autocovariance at lags 0 to L, 0 beyond (what a
        linear system driven by the stream sees: `sgdexp.stats.correlated_stationary_variance`);
        None when the stream has no finite variance or the source does not say."""
        return None

    @abc.abstractmethod
    def sample(self) -> torch.Tensor:
        """Draw the next step, a tensor of shape ``self.shape`` that the caller may modify (the
        source never reads it again)."""

    def state_dict(self) -> StateDict:
        """The source's own state (tensors are copies); the generator is not included."""
        return {"steps": self.steps, "numel": self.numel}

    def load_state_dict(self, state: StateDict) -> None:
        """Restore a state from :meth:`state_dict` of a source built with the same arguments."""
        self._expect(state, "numel", self.numel)
        self.steps = int(state["steps"])

    def tensor_bytes(self) -> int:
        """Bytes held in this object's tensors (its whole memory footprint, up to Python overhead)."""
        return sum(v.numel() * v.element_size() for v in vars(self).values() if isinstance(v, torch.Tensor))

    def _expect(self, state: StateDict, key: str, value) -> None:
        if key not in state:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state has no {key!r}")
        if state[key] != value:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {key}={state[key]!r} in the state, "
                f"but this source has {key}={value!r}"
            )

    def _load_tensor(self, state: StateDict, key: str, like: torch.Tensor) -> None:
        t = state.get(key)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(like.shape):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {key!r} must be a tensor of shape {tuple(like.shape)}"
            )
        like.copy_(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.shape}, dtype={self.dtype}, device={self.device})"


BLOCK_NUMBERS = 1 << 16  # numbers drawn at once by the i.i.d. sources (256 KiB in float32: temporaries stay in cache)
# numbers drawn at once by a compiled sampler (no temporaries to keep in cache): a call right after
# a training step costs about 150 us more than in a loop of draws (measured), which 2 MiB blocks amortise
COMPILED_BLOCK_NUMBERS = 1 << 19


class BlockedIID(NoiseSource):
    """I.i.d. steps drawn ``block`` steps at a time and handed out one by one.

    Why: torch runs an elementwise kernel on one thread below 32768 elements, so a per-step draw
    for a small model uses one core; a block of ``BLOCK_NUMBERS`` numbers uses them all, and the
    transform of SαS is several transcendental functions per number. The stream is the same
    distribution whatever the block (but not the same numbers as per-step draws). State: the
    current block and the position in it.

    ``compile=True`` (CPU only) draws with a ``torch.compile``d sampler on SplitMix64 words, in
    blocks of ``COMPILED_BLOCK_NUMBERS``: the same law, another stream of numbers. Compiling
    costs 2-20 s once per process; if it fails, the sampler warns once and runs eagerly
    (:func:`sgdexp.compiling.compile_or_eager`).
    """

    def __init__(self, size: Size, generator=None, dtype=torch.float32, device=None, block: Optional[int] = None,
                 compile: bool = False):
        super().__init__(size, generator, dtype, device)
        self.compiled = bool(compile) and self.device.type == "cpu"
        self.block = int(block or max(1, (COMPILED_BLOCK_NUMBERS if self.compiled else BLOCK_NUMBERS) // self.numel))
        self._buffer = torch.empty(0, self.numel, dtype=self.dtype, device=self.device)
        self._position = 0

    @abc.abstractmethod
    def draw(self, rows: int) -> torch.Tensor:
        """``rows`` i.i.d. steps as a (rows, numel) tensor."""

    def _key(self) -> torch.Tensor:
        return _draw_key(self.generator, self.device)

    def sample(self) -> torch.Tensor:
        if self._position == len(self._buffer):
            self._buffer = self.draw(self.block)
            self._position = 0
        row = self._buffer[self._position]
        self._position += 1
        self.steps += 1
        return row.view(self.shape)

    def state_dict(self) -> StateDict:
        return {**super().state_dict(), "buffer": self._buffer.clone(), "position": self._position}

    def load_state_dict(self, state: StateDict) -> None:
        super().load_state_dict(state)
        buffer = state.get("buffer")
        if not isinstance(buffer, torch.Tensor) or (buffer.numel() and buffer.shape[1] != self.numel):
            raise ValueError(f"{type(self).__name__}.load_state_dict: 'buffer' must be a (rows, {self.numel}) tensor")
        self._buffer = buffer.to(dtype=self.dtype, device=self.device).clone()
        self._position = int(state["position"])


class WhiteNoise(BlockedIID):
    """I.i.d. standard Gaussian steps, N(0, I) (exact; ``torch.randn``, or Box--Muller on
    SplitMix64 words when compiled)."""

    def memory(self) -> np.ndarray:
        return np.ones(1)

    def draw(self, rows: int) -> torch.Tensor:
        if self.compiled:
            return _compiled(_gaussian_draw)(self._key(), rows * self.numel, self.dtype).view(rows, self.numel)
        return self._randn(rows, self.numel)


class StableNoise(BlockedIID):
    """I.i.d. SαS steps of unit scale (:func:`symmetric_alpha_stable`).

    ``compile=True`` runs random words and transform as one ``torch.compile``d kernel on CPU
    (about 3.3 ns instead of 10-12 ns per float32 number on 2 cores; it pays off beyond about 10^9
    numbers, i.e. steps x parameters). The numbers agree with the eager sampler's to a few
    float32 ulps (same words).
    """

    def __init__(self, alpha: float, size: Size, generator=None, dtype=torch.float32, device=None,
                 block: Optional[int] = None, compile: bool = False):
        self.alpha = _check_alpha(alpha)
        super().__init__(size, generator, dtype, device, block, compile=compile and self.alpha not in (1.0, 2.0))

    def memory(self) -> Optional[np.ndarray]:
        """Variance 2 at α = 2 (Gaussian of scale √2); none below (infinite variance)."""
        return np.full(1, 2.0) if self.alpha == 2.0 else None

    def draw(self, rows: int) -> torch.Tensor:
        if self.compiled:
            alpha = torch.tensor(self.alpha, dtype=self.dtype)
            return _compiled(_sas_draw)(self._key(), rows * self.numel, alpha, self.dtype).view(rows, self.numel)
        return symmetric_alpha_stable(self.alpha, (rows, self.numel), self.generator, self.dtype, self.device)


class AntiCorrelatedNoise(WhiteNoise):
    """Anti-correlated Gaussian steps zeta_t = w_t - w_{t-1}, w i.i.d. N(0, I) (exact).

    Each coordinate has variance 2, lag-1 autocovariance -1 (correlation -1/2) and zero
    autocovariance beyond lag 1. The previous w is drawn at construction, so the first step is
    already stationary. A block of w's becomes a block of differences at once (one pass over the
    block, on every core). State: the block of zeta's and the last w before the next block.
    """

    def __init__(self, size: Size, generator=None, dtype=torch.float32, device=None, block: Optional[int] = None,
                 compile: bool = False):
        super().__init__(size, generator, dtype, device, block, compile)
        self._prev = super().draw(1)[0]

    def memory(self) -> np.ndarray:
        return np.array([2.0, -1.0])

    def draw(self, rows: int) -> torch.Tensor:
        w = super().draw(rows)
        zeta = torch.empty_like(w)
        torch.sub(w[0], self._prev, out=zeta[0])
        torch.sub(w[1:], w[:-1], out=zeta[1:])
        self._prev = w[-1].clone()
        return zeta

    def state_dict(self) -> StateDict:
        return {**super().state_dict(), "prev": self._prev.clone()}

    def load_state_dict(self, state: StateDict) -> None:
        super().load_state_dict(state)
        self._load_tensor(state, "prev", self._prev)


# ----------------------------------------------------------------------------------------------
# streaming fGn: Markovian multi-factor model
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StreamingFGNFit:
    """A fitted Markovian (multi-factor) model of unit-variance fGn.

    The model is the causal linear filter driven by one i.i.d. N(0, 1) innovation eps_t::

        X_t     = beta * eps_t + sum_j kappa[j] * s_j(t-1)
        s_j(t)  = rho[j] * s_j(t-1) + eps_t            j = 0 .. K-1,  rho[0] = 0

    i.e. X is an MA(infinity) with impulse response psi_0 = beta, psi_k = sum_j kappa[j] rho[j]^(k-1)
    (k >= 1): a sum of K geometric (AR(1)/Ornstein--Uhlenbeck) kernels, where the rho = 0 factor
    is the previous innovation (an MA(1) term). ``autocovariance`` is the model's exact
    stationary autocovariance (closed form, see :meth:`autocovariance`).

    Attributes: ``hurst``, ``beta`` (float), ``kappa`` and ``rho`` (float64 arrays of length K;
    empty for H = 0.5, which is exact white noise), ``max_lag`` (lags the fit targets) and
    ``max_abs_error`` = max over k in 1..max_lag of |model gamma(k) - exact fGn gamma(k)|.
    """

    hurst: float
    beta: float
    kappa: np.ndarray
    rho: np.ndarray
    max_lag: int
    max_abs_error: float

    @property
    def n_factors(self) -> int:
        return int(self.rho.size)

    def autocovariance(self, lags) -> np.ndarray:
        """The model's exact stationary autocovariance at integer ``lags`` (float64 array).

        With S_ij = Cov(s_i, s_j) = 1 / (1 - rho_i rho_j) (stationary factor covariance):
        gamma(0) = beta^2 + kappa' S kappa and, for k >= 1,
        gamma(k) = sum_j rho_j^(k-1) kappa_j (beta + rho_j (S kappa)_j)  (with 0^0 = 1).
        """
        if isinstance(lags, torch.Tensor):
            lags = lags.detach().cpu().numpy()
        k = np.abs(np.asarray(lags, dtype=np.float64))
        return _model_acov(self.beta, self.kappa, self.rho, k)

    def stationary_root(self) -> np.ndarray:
        """R with R Rᵀ = S, S_ij = 1/(1 − rho_i rho_j): the stationary covariance of the factors, so
        s = R z (z standard normal) starts them stationary. S is ill-conditioned: a clipped
        eigendecomposition square root, exact to ~1e-12 relative."""
        evals, evecs = np.linalg.eigh(_factor_cov(self.rho))
        return evecs * np.sqrt(np.clip(evals, 0.0, None))[None, :]


def _factor_cov(rho: np.ndarray) -> np.ndarray:
    """S_ij = 1 / (1 - rho_i rho_j), computed as 1/(-expm1(log rho_i + log rho_j)) for accuracy."""
    with np.errstate(divide="ignore"):
        lr = np.log(rho)
    return 1.0 / -np.expm1(lr[:, None] + lr[None, :])


def _powers(rho: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """P[k, j] = rho_j^(lag_k - 1) for lag >= 1 (0^0 = 1), 0 for lag 0."""
    e = np.maximum(lags - 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = rho[None, :] ** e[:, None]
    return np.where(lags[:, None] >= 1.0, p, 0.0)


def _model_acov(beta: float, kappa: np.ndarray, rho: np.ndarray, lags: np.ndarray) -> np.ndarray:
    if rho.size == 0:
        return np.where(lags == 0, beta * beta, 0.0)
    sk = _factor_cov(rho) @ kappa
    g = _powers(rho, lags) @ (kappa * (beta + rho * sk))
    return np.where(lags == 0, beta * beta + kappa @ sk, g)


def _wold_coefficients(hurst: float, m: int) -> np.ndarray:
    """First m/2 MA(infinity) (Wold, minimum-phase) coefficients psi_k of unit-variance fGn.

    Kolmogorov's cepstral spectral factorisation of the circulant (Davies--Harte) spectrum of
    size m: psi = IFFT(exp(FFT(causal part of the cepstrum of log lambda))). Used only as the
    starting point of the fit, so its O(1/m) aliasing error does not matter.
    """
    half = m // 2
    gam = fgn_autocovariance(np.arange(half + 1), hurst)
    lam = np.fft.rfft(np.concatenate([gam, gam[-2:0:-1]])).real
    cep = np.fft.irfft(np.log(np.maximum(lam, 1e-300)), m)
    causal = np.zeros(m)
    causal[0] = 0.5 * cep[0]
    causal[1:half] = cep[1:half]
    causal[half] = 0.5 * cep[half]
    return np.fft.irfft(np.exp(np.fft.rfft(causal)), m)[:half]


@functools.lru_cache(maxsize=64)
def _fit_cached(hurst: float, n_factors: int, max_lag: int) -> StreamingFGNFit:
    from scipy.optimize import least_squares, nnls

    if hurst == 0.5:
        empty = np.zeros(0)
        empty.setflags(write=False)
        return StreamingFGNFit(hurst, 1.0, empty, empty, max_lag, 0.0)

    # Factor rates: rho_0 = 0 (MA(1) term), then K-1 geometrically spaced time scales
    # tau from 0.5 to 20 * max_lag steps, rho = exp(-1/tau) rounded to float32, so that a float32
    # source uses exactly the fitted rates (1 - rho is as small as 5e-7: rounding after the fit
    # would move the slowest time scales by up to ~10%).
    tau = 0.5 * (40.0 * max_lag) ** (np.arange(n_factors - 1) / (n_factors - 2))
    rho = np.concatenate([[0.0], np.exp(-1.0 / tau).astype(np.float32).astype(np.float64)])

    # 1) Starting point: non-negative least squares fit of geometric kernels to the true Wold
    #    coefficients psi (H > 1/2: psi_k > 0 for k >= 1, long memory) or, for H < 1/2, to their
    #    partial sums Psi_k = psi_0 + ... + psi_k (positive, decreasing to 0: fGn with H < 1/2 is
    #    the first difference of the process with impulse response Psi). Fitted on log-spaced k
    #    with relative weights.
    m = 1 << min(22, max(16, int(math.ceil(math.log2(256 * max_lag)))))
    psi = _wold_coefficients(hurst, m)
    target = psi if hurst > 0.5 else np.cumsum(psi)
    ks = np.unique(np.round(np.geomspace(1, m // 8, 300)).astype(np.int64))
    wk = 1.0 / np.maximum(np.abs(target[ks]), 1e-12)
    basis = rho[None, 1:] ** ks[:, None].astype(np.float64)
    try:
        c, _ = nnls(basis * wk[:, None], target[ks] * wk, maxiter=100 * n_factors)
    except RuntimeError:  # iteration limit: start the polish from a plain white-noise model
        c = np.zeros(n_factors - 1)
    b = target[0] - c.sum()
    if hurst > 0.5:  # X_t = b eps_t + sum c_j s_j(t)
        theta0 = np.concatenate([[target[0], 0.0], c * rho[1:]])
    else:  # X_t = Y_t - Y_{t-1},  Y_t = b eps_t + sum c_j s_j(t)
        theta0 = np.concatenate([[target[0], -b], c * (rho[1:] - 1.0)])

    # 2) Polish (beta, kappa) by Levenberg--Marquardt on the exact model autocovariance versus
    #    the exact fGn autocovariance at lags 0..max_lag (lag 0 weighted heavily), plus a
    #    down-weighted log-spaced tail up to 30 * max_lag so the model stays sensible past max_lag.
    dense = np.arange(0, min(max_lag, 2000) + 1)
    sparse = np.round(np.geomspace(dense[-1], max_lag, 400)) if max_lag > dense[-1] else np.zeros(0)
    tail = np.round(np.geomspace(max_lag, 30 * max_lag, 60))
    lags = np.unique(np.concatenate([dense, sparse, tail])).astype(np.float64)
    weight = np.where(lags <= max_lag, 1.0, 0.3)
    weight[0] = 30.0
    goal = fgn_autocovariance(lags, hurst)
    S = _factor_cov(rho)
    P = _powers(rho, lags)
    is0 = lags == 0

    def residual(th):
        return weight * (_model_acov(th[0], th[1:], rho, lags) - goal)

    def jacobian(th):
        beta, kappa = th[0], th[1:]
        sk = S @ kappa
        jac = np.empty((lags.size, th.size))
        jac[:, 0] = P @ kappa
        jac[:, 1:] = P * (beta + rho * sk)[None, :] + (P * (kappa * rho)[None, :]) @ S
        jac[is0, 0] = 2.0 * beta
        jac[is0, 1:] = 2.0 * sk
        return weight[:, None] * jac

    check = np.arange(1, max_lag + 1, dtype=np.float64)
    exact = fgn_autocovariance(check, hurst)

    def normalised(th):  # exact unit variance, then the max error over lags 1..max_lag
        th = th / math.sqrt(_model_acov(th[0], th[1:], rho, np.zeros(1))[0])
        return th, float(np.max(np.abs(_model_acov(th[0], th[1:], rho, check) - exact)))

    best = normalised(theta0)
    sol = least_squares(residual, best[0], jac=jacobian, method="lm", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=300)
    cand = normalised(sol.x)
    if np.all(np.isfinite(cand[0])) and cand[1] < best[1]:
        best = cand
    theta, err = best
    kappa = theta[1:].copy()
    kappa.setflags(write=False)
    rho.setflags(write=False)
    return StreamingFGNFit(hurst, float(theta[0]), kappa, rho, max_lag, err)


def fit_streaming_fgn(hurst: float, n_factors: int = 16, max_lag: int = 1000) -> StreamingFGNFit:
    """Fit the Markovian ``n_factors``-factor model of fGn used by :class:`StreamingFGN`.

    Model: see :class:`StreamingFGNFit` (one innovation per step, K = ``n_factors`` geometric
    kernels including an MA(1) term; this handles H < 1/2, whose negative autocovariances a
    positive mixture of independent AR(1) factors cannot produce, as well as H > 1/2).
    Factor rates are fixed (time scales 0.5 .. 20*max_lag steps, log-spaced, rates rounded to
    float32 so float32 sources run the fitted model exactly; max_lag <= 1e5); the loadings are
    initialised by NNLS on the true Wold coefficients (H > 1/2) or their partial sums (H < 1/2,
    a differenced positively correlated process) and polished by Levenberg--Marquardt on the
    exact autocovariance over lags 0..max_lag; finally the loadings are rescaled so the variance
    is exactly 1.

    Error: ``max_abs_error`` (max |gamma_model(k) - gamma(k)|, k = 1..max_lag) is about 1e-4 or
    less for K = 16, max_lag = 1000 and H in [0.1, 0.9] (see the tests); beyond ~20*max_lag the
    model's memory decays exponentially. Results are cached per (hurst, n_factors, max_lag);
    a fit takes ~0.05-0.3 s.
    """
    hurst = _check_hurst(hurst)
    n_factors = _check_int("n_factors", n_factors, 4, _MAX_FACTORS)
    max_lag = _check_int("max_lag", max_lag, 2, _MAX_LAG)
    return _fit_cached(hurst, n_factors, max_lag)


class StreamingFGN(NoiseSource):
    """Fractional Gaussian noise drawn one step at a time, for ``numel`` independent coordinates.

    Method: the Markovian multi-factor model of :func:`fit_streaming_fgn` (one N(0, 1) innovation
    per coordinate and step, K = ``n_factors`` geometric factors sharing it, one of them the
    previous innovation). Per step: one ``randn(d)``, one K x d matrix-vector product and one
    fused K x d update; memory is the K x d factor state (``n_factors <= 32``), independent of
    the number of steps. The factor state is drawn from its stationary distribution at
    construction (from ``generator``), so every step, the first included, is stationary.

    Error: the output is exactly Gaussian and stationary with autocovariance
    ``self.autocovariance(k)``; it differs from the exact fGn autocovariance by at most
    ``self.fit.max_abs_error`` over lags 1..max_lag (~1e-4 at the defaults), and the memory
    beyond ~20*max_lag steps decays exponentially instead of as a power law. H = 0.5 is exact
    white noise (no factors, nothing stored).

    ``state_dict()`` holds the factor state and step count (plus hurst/n_factors/max_lag/numel
    for checking); with the caller's generator state it resumes the stream exactly.
    """

    def __init__(
        self,
        hurst: float,
        size: Size,
        generator: Optional[torch.Generator] = None,
        dtype: torch.dtype = torch.float32,
        device=None,
        n_factors: int = 16,
        max_lag: int = 1000,
    ):
        super().__init__(size, generator, dtype, device)
        self.fit = fit_streaming_fgn(hurst, n_factors, max_lag)
        self.hurst = self.fit.hurst
        self.n_factors = int(n_factors)
        self.max_lag = int(max_lag)
        k = self.fit.n_factors
        self._beta = float(self.fit.beta)
        self._kappa = torch.tensor(self.fit.kappa.copy(), dtype=self.dtype, device=self.device)
        self._rho = torch.tensor(self.fit.rho.copy(), dtype=self.dtype, device=self.device).view(k, 1)
        if k:
            # stationary start: s ~ N(0, S), S_ij = 1/(1 - rho_i rho_j); S is ill-conditioned,
            # so use a clipped eigendecomposition square root (exact to ~1e-12 relative).
            root_t = torch.as_tensor(self.fit.stationary_root(), dtype=self.dtype, device=self.device)
            self._state = root_t @ self._randn(k, self.numel)
        else:
            self._state = torch.zeros((0, self.numel), dtype=self.dtype, device=self.device)

    def sample(self) -> torch.Tensor:
        eps = self._randn(self.numel)
        self.steps += 1
        if self._state.shape[0] == 0:
            return eps.mul_(self._beta).view(self.shape)
        out = torch.addmv(eps, self._state.t(), self._kappa, beta=self._beta)  # beta eps + kappa.s
        torch.addcmul(eps, self._rho, self._state, out=self._state)  # s <- rho s + eps
        return out.view(self.shape)

    def autocovariance(self, lags) -> np.ndarray:
        """The exact stationary autocovariance of this source at ``lags`` (float64 numpy array)."""
        return self.fit.autocovariance(lags)

    def memory(self, tail: float = 1e-9, longest: int = 1 << 20) -> np.ndarray:
        """The autocovariance up to the lag where the slowest factor has decayed below `tail`
        (γ(k) ∝ ρ_max^k there), at most `longest` lags: the model's memory is finite, unlike fGn's."""
        rho = float(self.fit.rho.max()) if self.fit.n_factors else 0.0
        lags = 1 if rho <= 0 else min(longest, 2 + int(math.ceil(math.log(tail) / math.log(rho))))
        return self.autocovariance(np.arange(lags))

    def state_dict(self) -> StateDict:
        return {
            **super().state_dict(),
            "hurst": self.hurst,
            "n_factors": self.n_factors,
            "max_lag": self.max_lag,
            "factors": self._state.clone(),
        }

    def load_state_dict(self, state: StateDict) -> None:
        for key in ("hurst", "n_factors", "max_lag"):
            self._expect(state, key, getattr(self, key))
        super().load_state_dict(state)
        self._load_tensor(state, "factors", self._state)

    def __repr__(self) -> str:
        return (
            f"StreamingFGN(hurst={self.hurst}, size={self.shape}, n_factors={self.n_factors}, "
            f"max_lag={self.max_lag}, dtype={self.dtype}, device={self.device})"
        )
