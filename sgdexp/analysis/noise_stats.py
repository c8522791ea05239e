"""`analysis=[noise_stats]`: the distribution of SGD's noise at fixed weights.

Every `every` steps: M = `batches` minibatch gradients (batches of `noise.batch_size` samples drawn
without replacement within a batch, independently across batches) against the full gradient, both
in eval mode (see `sgdexp.gradients`). The SGN ξ = g_B − ∇L is reduced on the fly, so memory is
O(M · params), never O(M · d).

Logged: per-parameter SαS tail index α (Battash et al.: one α per coordinate; per-layer median and
quartiles where a layer has enough sampled coordinates, else the values themselves; histograms) with
its adequacy: whether an SαS law describes each coordinate at all (`sgdexp.stats.stable_adequacy`:
CF misfit and ECF/block-sum agreement against their null distribution at M), the fraction that
passes (overall and per layer), and the share of noise power carried by the top 1 % of the M
batches (of |ξ|², and per coordinate). When most coordinates fail, one warning line says so.
Two pooled α over all recorded coordinates of all noise vectors (Simsekli et al.):
`alpha_scale_mixture` pools the raw values, so it measures the spread of scales across coordinates
(a mixture of Gaussians of different variances reads heavy-tailed), and `alpha_pooled_standardized`
pools coordinates each divided by its half-IQR, which keeps the common shape. Also: the fraction of coordinates whose noise is not Gaussian (D'Agostino–Pearson and
Anderson–Darling, Benjamini–Hochberg at `fdr_level`); the mean noise norm |ξ|; the gradient noise
scale B_simple = tr(C)/|∇L|² (McCandlish et al. 2018) with tr(C) = B (N−1)/(N−B) · mean |ξ|² (the
finite-population factor undoes sampling without replacement within a batch) and its standard
error; and the signal-to-noise ratio of each layer's minibatch gradient.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np
import torch

from sgdexp.analysis.base import Analysis, CoordinateSample, Measurement, layer_quantiles
from sgdexp.data import random_batches
from sgdexp.stats import (gaussianity_tests, gradient_snr_from_sums, stable_adequacy, tail_index, top_power_share,
                          trace_from_minibatch_noise)
from sgdexp.stats.tail import _iqr_half

log = logging.getLogger(__name__)


class NoiseStats(Analysis):
    def __init__(self, cfg, source, noise_cfg, seed, steps):
        super().__init__(cfg, source, noise_cfg, seed, steps)
        self.coords = CoordinateSample(source, cfg.params, self.generator, min_per_layer=int(cfg.min_per_layer))
        self.batch_size = int(noise_cfg.batch_size)
        # a batch of every sample is the full gradient: ξ is rounding error, whose "tail index" and
        # Gaussianity would be numbers about float arithmetic (and tr C's factor (N−B) is 0)
        if self.batch_size >= source.n_train:
            self.without_noise(f"noise.batch_size={self.batch_size} takes all {source.n_train} training samples "
                               f"(a minibatch gradient is the full gradient)")

    def compute(self, step: int) -> Optional[Measurement]:
        source, idx = self.source, self.coords.index
        full = source.full_grad_vector(eval_mode=True)
        # Reduced chunk by chunk: the recorded coordinates, |ξ|², and per-layer sums for the SNR.
        recorded, sq_norms = [], []
        layer_sum = torch.zeros(source.dim, dtype=torch.float64, device=full.device)
        layer_sq = torch.zeros(len(source.numels), dtype=torch.float64, device=full.device)
        batches = random_batches(source.n_train, self.batch_size, self.cfg.batches, self.generator, full.device)
        for g in source.minibatch_grads(batches):
            xi = g - full
            recorded.append(xi[:, idx].double().cpu())
            # squares in place, sums in float64: no (m, d) float64 copies
            sq_norms.append(xi.square_().sum(dim=1, dtype=torch.float64).cpu())
            layer_sum += g.sum(dim=0, dtype=torch.float64)
            layer_sq += torch.stack([p.sum(dtype=torch.float64) for p in g.square_().split(source.numels, dim=1)])
        X = torch.cat(recorded).numpy()  # (M, params)
        sq = torch.cat(sq_norms).numpy()
        alpha = np.asarray(tail_index(X, dim=0, method=self.cfg.tail_method), dtype=float).reshape(-1)
        fit = stable_adequacy(X, dim=0)  # its own ECF α: the diagnostic is of the ECF-fitted law
        adequate = fit.adequate.reshape(-1)
        scale = _iqr_half(X.T)
        spread = scale > 0
        standardized = X[:, spread] / scale[spread]
        gauss = gaussianity_tests(X, dim=0, alpha_level=self.cfg.fdr_level)
        trace, trace_se = trace_from_minibatch_noise(sq, self.batch_size, self.source.n_train)
        grad_sq = float(full.double().square().sum())
        m = len(sq)
        snr = {name: gradient_snr_from_sums(part, float(q), m)
               for name, part, q in zip(source.named_params, layer_sum.split(source.numels), layer_sq)}
        scalars: Dict[str, float] = {
            "noise_stats/alpha_scale_mixture": float(tail_index(X, method=self.cfg.tail_method, pooled=True)),
            "noise_stats/alpha_pooled_standardized": float(tail_index(standardized, method=self.cfg.tail_method,
                                                                      pooled=True)),
            "noise_stats/alpha_median": float(np.nanmedian(alpha)),
            "noise_stats/alpha_adequate_fraction": fit.adequate_fraction,
            "noise_stats/alpha_block_sum_median": float(np.nanmedian(fit.alpha_block_sum)),
            "noise_stats/alpha_estimator_gap_median": float(np.nanmedian(fit.estimator_gap)),
            "noise_stats/alpha_cf_misfit_median": float(np.nanmedian(fit.cf_misfit)),
            "noise_stats/top1pct_power_share": float(top_power_share(sq ** 0.5)),
            "noise_stats/top1pct_power_share_coord_median": float(np.nanmedian(fit.top_share)),
            "noise_stats/non_gaussian_fraction": float(gauss.fraction_rejected),
            "noise_stats/non_gaussian_fraction_ad": float(gauss.fraction_rejected_anderson),
            "noise_stats/noise_norm": float(np.sqrt(sq).mean()),
            "noise_stats/trace_cov": trace,
            "noise_stats/trace_cov_se": trace_se,
            "noise_stats/grad_norm": float(np.sqrt(grad_sq)),
            "noise_stats/noise_scale": trace / grad_sq if grad_sq > 0 else float("inf"),
            **layer_quantiles("noise_stats/alpha", alpha, self.coords.layers),
            **{f"noise_stats/alpha_adequate/{layer}": float(adequate[i].mean()) for layer, i in self.coords.layers.items()},
            **{f"noise_stats/snr/{k}": float(v) for k, v in snr.items()},
        }
        arrays = {f"noise_stats/alpha/{layer}": alpha[i] for layer, i in self.coords.layers.items()}
        arrays["noise_stats/normaltest_p"] = np.asarray(gauss.normaltest_p, dtype=float).reshape(-1)
        if fit.adequate_fraction < 0.5:
            log.warning("noise_stats step %d: an SαS law fits only %.0f%% of %d coordinates (median α %.2f by ECF, "
                        "%.2f by block sums; top 1%% of batches carry %.0f%% of the noise power): α is not a tail index here",
                        step, 100 * fit.adequate_fraction, len(adequate), np.nanmedian(alpha),
                        np.nanmedian(fit.alpha_block_sum), 100 * scalars["noise_stats/top1pct_power_share"])
        self.last = scalars
        return Measurement(scalars, arrays)
