"""Noise for SGD experiments: generators of zeta_t (this file's first block) and noise-injection modes.

Generators live in :mod:`sgdexp.noise.generators`; see its docstring for methods and errors.
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
    symmetric_alpha_stable,
)

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
    "symmetric_alpha_stable",
]

# Noise-injection modes (sgdexp/noise/modes.py) are imported below.
