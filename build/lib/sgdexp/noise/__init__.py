"""Noise for SGD experiments: generators of zeta_t and noise modes.

Generators (pure torch, re-exported here) live in :mod:`sgdexp.noise.generators`; see its
docstring for methods and errors. The noise modes of the `noise` config group, which need a model
and data, live in :mod:`sgdexp.noise.modes`, with :func:`sgd_covariance_noise` (exact N(0, C(θ)/B)
noise at a model's weights, re-exported here).
"""
from sgdexp.noise.generators import (
    AntiCorrelatedNoise,
    BlockedIID,
    NoiseSource,
    StableNoise,
    StreamingFGN,
    StreamingFGNFit,
    WhiteNoise,
    fgn_autocovariance,
    fit_streaming_fgn,
    fractional_gaussian_noise,
    splitmix64,
    symmetric_alpha_stable,
)
from sgdexp.noise.modes import sgd_covariance_noise

__all__ = [
    "AntiCorrelatedNoise",
    "BlockedIID",
    "NoiseSource",
    "StableNoise",
    "StreamingFGN",
    "StreamingFGNFit",
    "WhiteNoise",
    "fgn_autocovariance",
    "fit_streaming_fgn",
    "fractional_gaussian_noise",
    "sgd_covariance_noise",
    "splitmix64",
    "symmetric_alpha_stable",
]

