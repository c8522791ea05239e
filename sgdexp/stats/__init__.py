"""Pure statistical estimators for stochastic-gradient-noise analysis.

Arrays in (numpy arrays or torch tensors, any device), numbers/arrays out; nothing here knows
about models or training. The series estimators (:func:`tail_index`, :func:`hurst_exponent`,
:func:`autocorrelation`, :func:`gaussianity_tests`) take samples/time along ``dim`` and treat
every other axis as an independent series, run on all series at once, compute in float64
numpy and return float64 numpy arrays shaped like the input without ``dim`` (a Python float
for a single series). The gradient-noise quantities work in torch float64 on the input's
device and return Python floats / small numpy arrays.

* :mod:`.tail` -- S-alpha-S tail index (``"ecf"`` default, ``"quantile"``, ``"block_sum"``,
  ``"hill"``; per-series or pooled).
* :mod:`.hurst` -- Hurst exponent of increments (``"whittle"`` default, ``"local_whittle"``,
  ``"dfa"``, ``"rs"``).
* :mod:`.correlation` -- FFT autocorrelation.
* :mod:`.gaussianity` -- D'Agostino-Pearson / Anderson-Darling / Shapiro-Wilk with
  Benjamini-Hochberg control across series.
* :mod:`.adequacy` -- does an S-alpha-S law fit at all: CF misfit, ECF/block-sum agreement,
  share of power in the top 1 % of samples.
* :mod:`.gradient_noise` -- noise scale (McCandlish et al. 2018), two-batch estimator,
  per-layer SNR, covariance-Hessian alignment (and the `cosine` of two tensors it uses).
* :mod:`.stationary` -- stationary variance of SGD (with torch's momentum) per Hessian eigendirection.
* :mod:`.survival` -- Kaplan-Meier with Greenwood band, censored escape-time summary.
* :mod:`.fits` -- straight-line fits (slope, intercept, R², slope SE).
* :mod:`.diffusion` -- mean squared displacement (direct or FFT, exact), diffusion exponent,
  local exponents and the super-/sub-diffusive crossover.
"""

from .adequacy import StableAdequacy, stable_adequacy, top_power_share
from .correlation import autocorrelation
from .diffusion import (
    DiffusionExponent,
    MSDResult,
    WindowedMSD,
    crossover,
    diffusion_exponent,
    local_exponents,
    log_lags,
    mean_squared_displacement,
    msd,
    power_law_fit,
)
from .gaussianity import GaussianityResult, anderson_darling_normal, gaussianity_tests
from .gradient_noise import (
    Alignment,
    NoiseScale,
    cosine,
    covariance_hessian_alignment,
    gradient_noise_scale,
    gradient_snr,
    gradient_snr_from_sums,
    noise_scale_two_batch,
    trace_from_minibatch_noise,
)
from .stationary import (correlated_stationary_variance, epoch_noise_autocorrelation, expected_window_variance,
                         relaxation_steps, sgd_stationary_variance)
from .hurst import DEFAULT_HURST_METHOD, HURST_METHODS, fgn_spectral_shape, hurst_exponent
from .tail import DEFAULT_TAIL_METHOD, TAIL_METHODS, tail_index
from .survival import KaplanMeier, escape_time_summary, kaplan_meier
from .fits import LineFit, line_fit
from ._arrays import finite_median, finite_row_means

__all__ = [
    "tail_index", "TAIL_METHODS", "DEFAULT_TAIL_METHOD", "stable_adequacy", "StableAdequacy", "top_power_share",
    "hurst_exponent", "HURST_METHODS", "DEFAULT_HURST_METHOD", "fgn_spectral_shape",
    "autocorrelation",
    "gaussianity_tests", "GaussianityResult", "anderson_darling_normal",
    "gradient_noise_scale", "noise_scale_two_batch", "trace_from_minibatch_noise", "NoiseScale", "gradient_snr", "gradient_snr_from_sums",
    "covariance_hessian_alignment", "Alignment", "cosine",
    "sgd_stationary_variance", "correlated_stationary_variance", "expected_window_variance", "epoch_noise_autocorrelation",
    "relaxation_steps",
    "kaplan_meier", "KaplanMeier", "escape_time_summary",
    "line_fit", "LineFit",
    "msd", "diffusion_exponent", "WindowedMSD", "DiffusionExponent", "power_law_fit", "local_exponents", "crossover", "log_lags",
    "mean_squared_displacement", "MSDResult",
    "finite_median", "finite_row_means",
]
