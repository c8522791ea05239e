"""`analysis=[curvature]`: the Hessian on a schedule, and how the weights fluctuate along it.

At each measurement (every `every` steps from `start`, and at the end):

- the `top_k` largest and `bottom_k` smallest Hessian eigenvalues with their eigenvectors (Lanczos
  through `sgdexp.curvature`) and the trace (exact over the vectors Lanczos multiplied for the top
  ones, Hutchinson with `probes` probes beyond them). Models with at most
  `exact_below` parameters get the dense Hessian instead (dim HVPs against the identity, one
  `eigh`): every eigenpair and the exact trace;
- the noise covariance C projected on those directions, from the per-sample losses of
  `noise_samples` samples (0: all N), and its alignment with H (`stats.covariance_hessian_alignment`:
  Xie et al. assume C ∝ H near minima; this checks it);
- the per-step noise variance along each direction, s_i = v_iᵀ C v_i / B times (N − B)/(N − 1)
  under `noise.sampler=epoch` (the batch-noise power of sampling without replacement);
- on a fixed Hessian (`model=linear` on a regression set, trained by `optimizer=sgd` at a constant
  learning rate with a noise mode of finite variance), the variance that uncorrelated noise of that
  power would give, per direction (torch's SGD with momentum, Nesterov, weight decay), and the same
  for the noise's own memory: stationary where no window follows, else what the window's sample
  variance reads in expectation (its mean moves with the slow directions:
  `stats.expected_window_variance`).

Then the weights are projected on the same directions after each of the next `window` updates; at
the window's end the variance of each projection is logged beside its eigenvalue, its relaxation
time 1/(η_eff λ) in steps and, on a fixed Hessian, the measured/predicted ratio. Kühn & Rosenow:
under epoch sampling the ratio falls far below 1 along directions that relax over many epochs; the
predictions for the noise's memory (`_predictions`) and for that noise split at the window's mean
weights (`_split_prediction`) account for it.
On a fixed Hessian the noise variance of the prediction is the mean over `noise_points` evenly
spaced points of the window (at one point it fluctuates by 4-8% between stationary points of linear
regression, more than the 10% check allows). The prediction holds in the stationary state: start
the analysis after the weights have relaxed (`start`); the window's own finite length is accounted
for, but a window of few relaxation times reads its variance with a large sampling error.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from sgdexp.analysis.base import Analysis, Measurement
from sgdexp.curvature import eigenpairs_and_trace, loss_hvp, most_lanczos_eigenpairs, top_eigenpairs
from sgdexp.errors import ConfigError
from sgdexp.noise.modes import StepNoise, has_memory
from sgdexp.schedules import constant_lr, lr_factor_fn
from sgdexp.stats import (correlated_stationary_variance, covariance_hessian_alignment, expected_window_variance,
                          relaxation_steps)

log = logging.getLogger(__name__)


def has_fixed_hessian(source) -> bool:
    """Linear regression: a single `nn.Linear` (after a Flatten) under the squared loss."""
    layers = [m for m in source.model.modules() if not isinstance(m, (nn.Sequential, nn.Flatten))]
    return not source.classification and len(layers) == 1 and isinstance(layers[0], nn.Linear)


class Curvature(Analysis):
    records_weights = True
    second_order = True

    def __init__(self, cfg, source, noise_cfg, seed, steps):
        super().__init__(cfg, source, noise_cfg, seed, steps)
        if cfg.window >= cfg.every and cfg.window > 0:
            raise ConfigError("analysis.curvature.window", cfg.window,
                              f"a window shorter than analysis.curvature.every={cfg.every} (windows must not overlap; "
                              f"0 for none)")
        self.window = int(cfg.window)
        self.exact = source.dim <= cfg.exact_below
        if not self.exact:  # Lanczos: k eigenpairs hold a basis of 4 (k + 1) + 2 vectors of the model's size
            most = most_lanczos_eigenpairs(source.dim)
            for key in ("top_k", "bottom_k"):
                if cfg[key] > most:
                    raise ConfigError(f"analysis.curvature.{key}", cfg[key],
                                      f"at most {most} by Lanczos for a model of {source.dim} parameters (every "
                                      f"eigenpair of models with at most analysis.curvature.exact_below="
                                      f"{cfg.exact_below} parameters)")
        self.fixed_hessian = has_fixed_hessian(source) and cfg.optimizer == "sgd"
        constant_rate = constant_lr(cfg)
        if self.fixed_hessian and not constant_rate:
            # the stationary variance is that of one learning rate: under a schedule the weights'
            # variance follows the rate with a lag of the relaxation time, which no ratio would show
            log.info("curvature: no stationary-variance prediction: it is for a constant learning rate, and "
                     "trainer.lr_schedule=%s, trainer.warmup_steps=%d", cfg.lr_schedule, cfg.warmup_steps)
            self.fixed_hessian = False
        # the rate over a window, for its relaxation times (a loop over the window's steps only under a schedule)
        self.lr_factor = None if constant_rate else lr_factor_fn(cfg, steps)
        self.noise = None  # the run's noise mode (`connect`)
        self.device = source.params[0].device
        n = source.n_train
        self.labels: List[str] = []
        self.eigenvalues = np.zeros(0)
        self.vectors = torch.zeros(0, source.dim, device=self.device)
        self.predicted = self.predicted_correlated = self.predicted_split = np.zeros(0)
        self.weight_sum: Optional[torch.Tensor] = None  # the window's weights summed (`splits_noise`)
        self.projections = torch.zeros(max(self.window, 1), 0, dtype=torch.float64, device=self.device)
        self.window_end: Optional[int] = None
        points = min(int(cfg.noise_points), self.window)
        self.noise_positions = set(np.linspace(0, self.window - 1, points).round().astype(int).tolist()) if points else set()
        self.noise_sum, self.noise_count = np.zeros(0), 0
        self.memory = np.ones(1)  # the step noise's autocorrelation ρ(0 … L) at the latest measurement
        self.measured: Optional[tuple] = None  # (step, sharpness) of the latest measurement (`sharpness_at`)
        m = int(cfg.hessian_samples)  # one fixed subset, so that measurements through training compare
        source.data.check_samples("analysis.curvature.hessian_samples", m, "0 (all) or ")
        self.hessian_indices = (torch.randperm(n, generator=self.generator)[:m].to(self.device)
                                if 0 < m < n else None)

    def connect(self, analyses, noise=None) -> None:
        self.noise = noise

    @property
    def predicts(self) -> bool:
        """Whether the stationary variance is predicted: a fixed Hessian trained by `optimizer=sgd`
        with a noise mode that adds noise of finite variance (not gd, not SαS below α = 2)."""
        return self.fixed_hessian and self._step_noise() is not None

    def _step_noise(self) -> Optional[StepNoise]:
        """The run's noise mode's `StepNoise`, or None (no mode, or no noise of finite variance)."""
        return self.noise.step_noise() if self.noise is not None else None

    @property
    def splits_noise(self) -> bool:
        """Whether the prediction is also made with the noise split at the window's mean weights
        (`_split_prediction`): predicted, its step noise has memory and a part that is the gradient
        covariance (epoch sampling), and that covariance is taken over all N samples (a subset's
        estimate would differ from point to point by more than the few percent the split is)."""
        if not self.predicts:
            return False
        noise = self._step_noise()
        return noise.correlated and bool(noise.covariance_scale) and self._noise_from_all

    # ------------------------------------------------------------------ schedule
    def measuring(self, step: int) -> bool:
        """A Hessian measurement at `step`: the schedule's, and the end of the run always (also when
        the run is shorter than `start`: the default schedule measures long runs only, see the yaml)."""
        return super().due(step) or step == self.steps

    def due(self, step: int) -> bool:
        return self.measuring(step) or step == self.window_end

    def recording(self, step: int) -> bool:
        return self.window_end is not None and self.window_end - self.window < step <= self.window_end

    def record(self, step: int) -> None:
        theta = self.source.flat_params()
        position = step - (self.window_end - self.window) - 1
        self.projections[position] = (self.vectors @ theta).double()
        if self.weight_sum is not None:
            self.weight_sum += theta.double()
        if position in self.noise_positions and self.predicts:
            self.noise_sum += self._noise_variance()
            self.noise_count += 1

    def _noise_variance(self, cv: Optional[torch.Tensor] = None) -> Optional[np.ndarray]:
        """The step noise's variance along each direction (`NoiseMode.step_noise`): its covariance
        scale times diag(Vᵀ C V) (`cv` = C V when already taken) plus its isotropic part; None when
        the mode adds no noise of finite variance."""
        noise = self._step_noise()
        if noise is None:
            return None
        variance = np.full(len(self.labels), noise.isotropic)
        if noise.covariance_scale:
            cv = self._noise_covariance_times(self.vectors) if cv is None else cv
            variance += (self.vectors.double() * cv.T).sum(1).cpu().numpy() * noise.covariance_scale
        return variance

    # ------------------------------------------------------------------ measurements
    def compute(self, step: int) -> Optional[Measurement]:
        out = Measurement()
        ended = step == self.window_end
        if ended:
            self._finish_window(out)
        if self.measuring(step):
            sharpness, noise_var = self._measure(out)
            self.measured = (step, sharpness)
            if self.window and step + self.window <= self.steps:
                self.window_end = step + self.window
                self.projections = torch.zeros(self.window, len(self.labels), dtype=torch.float64, device=self.device)
                self.weight_sum = (torch.zeros(self.source.dim, dtype=torch.float64, device=self.device)
                                   if self.splits_noise else None)
                if self.predicts and not self.noise_positions:  # noise_points=0: this point stands for the window's
                    self.noise_sum, self.noise_count = noise_var.copy(), 1
            else:
                if self.window and step < self.steps:  # said: the summary's window keys stay older ones
                    log.info("curvature: no weight-variance window after the measurement at step %d: "
                             "analysis.curvature.window=%d steps would end at step %d, past trainer.steps=%d",
                             step, self.window, step + self.window, self.steps)
                if not ended and self.predicts:  # no window follows: the prediction at this point is all there is
                    self.predicted, self.predicted_correlated = self._predictions(noise_var)
                    self._log_predictions(out)
        self.last.update(out.scalars)
        return out

    def sharpness_at(self, step: int) -> Optional[Dict[str, float]]:
        """`top_eigenvalue`, `trace`, `trace_se` of the full training loss's Hessian as measured at
        `step`, or None when this analysis did not measure there (or measured a subset's Hessian):
        the generalization analysis takes its sharpness from here rather than
        measure the same Hessian twice."""
        if self.measured is None or self.measured[0] != step or self.hessian_indices is not None:
            return None
        return dict(self.measured[1])

    def _eigenpairs(self, hvp):
        """(eigenvalues, (k, dim) eigenvectors, labels, trace, trace s.e.): top_k descending, then
        bottom_k ascending (all directions once when top_k + bottom_k ≥ dim)."""
        dim, top_k, bottom_k = self.source.dim, int(self.cfg.top_k), int(self.cfg.bottom_k)
        if self.exact:
            # Dense Hessian of a small model from dim HVPs: every eigenpair exactly, no Lanczos tolerance.
            h = hvp(torch.eye(dim, device=self.device)).double()
            values, vectors = torch.linalg.eigh((h + h.T) / 2)
            values, vectors = values.flip(0).cpu().numpy(), vectors.flip(1).T.float()
            top_k = min(top_k, dim)
            bottom_k = min(bottom_k, dim - top_k)
            keep = list(range(top_k)) + list(range(dim - 1, dim - 1 - bottom_k, -1))
            trace, trace_se = float(values.sum()), 0.0
            return values[keep], vectors[keep], self._labels(top_k, bottom_k), trace, trace_se
        top_k, bottom_k = min(top_k, dim - 1), min(bottom_k, dim - 1)
        values, vectors, trace, trace_se = eigenpairs_and_trace(hvp, dim, k=top_k, probes=self.cfg.probes,
                                                                tol=self.cfg.tol, generator=self.generator,
                                                                device=self.device)
        if bottom_k:
            low, low_vectors = top_eigenpairs(hvp, dim, k=bottom_k, which="SA", tol=self.cfg.tol,
                                              generator=self.generator, device=self.device)
            values, vectors = np.concatenate([values, low]), torch.cat([vectors, low_vectors])
        return values, vectors, self._labels(top_k, bottom_k), trace, trace_se

    @staticmethod
    def _labels(top_k: int, bottom_k: int) -> List[str]:
        return [f"top{i}" for i in range(top_k)] + [f"bottom{i}" for i in range(bottom_k)]

    def _noise_covariance_times(self, vectors: torch.Tensor) -> torch.Tensor:
        """C V for V = vectors.T (dim, k), C the covariance of the per-sample gradients of
        `noise_samples` seeded samples (all N when 0 or ≥ N): `GradientSource.noise_covariance_times`,
        products with the per-sample losses' Jacobian, never the per-sample gradients or C."""
        return self.source.noise_covariance_times(vectors.T, self._noise_indices())

    @property
    def _noise_from_all(self) -> bool:
        m = int(self.cfg.noise_samples)
        return m == 0 or m >= self.source.n_train

    def _noise_indices(self) -> Optional[torch.Tensor]:
        """`noise_samples` samples drawn from this analysis's stream, or None for all N."""
        if self._noise_from_all:
            return None
        return torch.randperm(self.source.n_train, generator=self.generator)[: int(self.cfg.noise_samples)].to(self.device)

    def _measure(self, out: Measurement) -> Tuple[Dict[str, float], Optional[np.ndarray]]:
        """One Hessian measurement into `out`; returns its sharpness (top eigenvalue, trace, its s.e.)
        and the step noise's variance along the new directions (None without noise of finite variance)."""
        hvp = loss_hvp(self.source, indices=self.hessian_indices)
        values, vectors, labels, trace, trace_se = self._eigenpairs(hvp)
        self.eigenvalues, self.vectors, self.labels = values, vectors.to(self.device), labels
        cv = self._noise_covariance_times(self.vectors)
        align = covariance_hessian_alignment(eigvecs=self.vectors.T, hessian_eigvals=values,
                                             cov_matvec=lambda _: cv)
        noise_var = self._noise_variance(cv)
        self.noise_sum, self.noise_count = np.zeros(len(labels)), 0
        step_noise = self._step_noise()
        self.memory = step_noise.autocorrelation if step_noise is not None else np.ones(1)
        s: Dict[str, float] = {"curvature/top_eigenvalue": float(values[0]), "curvature/trace": trace,
                               "curvature/trace_se": trace_se,
                               "curvature/alignment/proj_cosine": float(align.proj_cosine)}
        if align.proj_diag_pearson is not None:  # three directions or more
            s["curvature/alignment/proj_diag_pearson"] = align.proj_diag_pearson
        for i, (label, value) in enumerate(zip(labels, values)):
            s[f"curvature/eigenvalue/{label}"] = float(value)
            if noise_var is not None:
                s[f"curvature/noise_variance/{label}"] = float(noise_var[i])
        self.predicted = self.predicted_correlated = self.predicted_split = np.full(len(labels), np.nan)
        out.scalars.update(s)
        out.arrays["curvature/eigenvalues"] = np.asarray(values, dtype=float)
        return {"top_eigenvalue": float(values[0]), "trace": trace, "trace_se": trace_se}, noise_var

    def _finish_window(self, out: Measurement) -> None:
        variance = self.projections.var(dim=0).cpu().numpy()
        c = self.cfg
        tau = relaxation_steps(self.eigenvalues + c.weight_decay, self._window_lr(), c.momentum) \
            if c.optimizer == "sgd" else np.full(len(variance), np.nan)
        for label, var, t in zip(self.labels, variance, tau):
            out.scalars[f"curvature/weight_variance/{label}"] = float(var)
            out.scalars[f"curvature/relaxation_steps/{label}"] = float(t)
        out.arrays.update({"curvature/window_eigenvalues": np.asarray(self.eigenvalues, dtype=float),
                           "curvature/weight_variance": variance, "curvature/relaxation_steps": tau})
        if self.noise_count:  # the prediction for the window's mean noise variance
            noise_var = self.noise_sum / self.noise_count
            self.predicted, self.predicted_correlated = self._predictions(noise_var, self.window)
            if self.weight_sum is not None:
                self.predicted_split, moving = self._split_prediction(noise_var)
                out.scalars.update({f"curvature/noise_moving_share/{k}": float(m / v)
                                    for k, m, v in zip(self.labels, moving, noise_var)})
        self._log_predictions(out, variance)
        self.window_end, self.weight_sum = None, None

    def _window_lr(self) -> float:
        """The learning rate of the window's updates, their mean under a schedule (update `s` takes
        factor(s − 1)): a relaxation time is that of the rate the weights saw, not the base rate."""
        if self.lr_factor is None:
            return float(self.cfg.lr)
        first = self.window_end - self.window  # the update of step first + 1 is the window's first
        return float(self.cfg.lr * np.mean([self.lr_factor(s) for s in range(first, self.window_end)]))

    def _log_predictions(self, out: Measurement, variance: Optional[np.ndarray] = None) -> None:
        """The predicted variance per direction, for uncorrelated noise, for the noise's own memory
        (suffix "_correlated") and for the noise split at the window's mean weights ("_split"), where
        made; with the window's measured `variance`, their ratios."""
        for suffix, predicted in (("", self.predicted), ("_correlated", self.predicted_correlated),
                                  ("_split", self.predicted_split)):
            if not np.isfinite(predicted).any():
                continue
            out.scalars.update({f"curvature/predicted_variance{suffix}/{k}": float(v) for k, v in zip(self.labels, predicted)})
            if variance is not None:
                # no noise (B = N, σ = 0) predicts 0: the ratio is undefined there (NaN), not a warning
                ratio = np.divide(variance, predicted, out=np.full_like(variance, np.nan, dtype=float),
                                  where=predicted != 0)
                out.scalars.update({f"curvature/variance_ratio{suffix}/{k}": float(r) for k, r in zip(self.labels, ratio)})
                out.arrays[f"curvature/variance_ratio{suffix}"] = ratio

    def _predictions(self, noise_var: np.ndarray, window: Optional[int] = None):
        """The variance per direction for uncorrelated noise of per-step variance `noise_var`, and
        for noise of that variance with the step noise's own memory (NaN when it has none):
        stationary, or read by a window of `window` steps (`_predicted`)."""
        uncorrelated = self._predicted(noise_var[:, None], window)
        if not has_memory(self.memory):
            return uncorrelated, np.full(len(noise_var), np.nan)
        return uncorrelated, self._predicted(noise_var[:, None] * self.memory[None, :], window)

    def _split_prediction(self, noise_var: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(variance the window reads, moving part) per direction with the window's mean noise
        variance `noise_var` s̄ split in two: s(θ̄), its value at the window's mean weights θ̄ (the
        stationary mean), with the step noise's memory, and the rest, s̄ − s(θ̄), the part that moves
        with the weights (the residuals of linear regression move with them), as uncorrelated noise.
        Epoch batches cancel the noise of fixed weights within an epoch, not what the weights' own
        moves within the epoch add: on the epoch_anticorrelation preset that part is a few percent of
        the noise or less, yet along directions slower than a few epochs, where the anti-correlated
        part nearly cancels, it sets the variance (README)."""
        with self.source.at_weights(self.weight_sum / self.window):
            at_mean = self._noise_variance()
        moving = np.maximum(noise_var - at_mean, 0.0)
        anticorrelated = self._predicted(at_mean[:, None] * self.memory[None, :], self.window)
        return anticorrelated + self._predicted(moving[:, None], self.window), moving

    def _predicted(self, autocovariance: np.ndarray, window: Optional[int]) -> np.ndarray:
        """The variance per direction that step noise of `autocovariance` (a row per direction; one
        column: uncorrelated) gives SGD on the fixed Hessian: stationary
        (`stats.correlated_stationary_variance`), or with `window` what the window's sample variance
        reads in expectation (`stats.expected_window_variance`: the window's mean moves with the slow
        directions, by ≈ 2τ/T of their variance for uncorrelated noise and far more for long memory)."""
        c = self.cfg
        curvature = self.eigenvalues + c.weight_decay
        if window:
            return expected_window_variance(curvature, autocovariance, window, c.lr, c.momentum, c.nesterov)
        return correlated_stationary_variance(curvature, autocovariance, c.lr, c.momentum, c.nesterov)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> Dict:
        return {**super().state_dict(), "labels": list(self.labels),
                "eigenvalues": torch.from_numpy(np.asarray(self.eigenvalues, dtype=np.float64)),
                "predicted": torch.from_numpy(np.asarray(self.predicted, dtype=np.float64)),
                "predicted_correlated": torch.from_numpy(np.asarray(self.predicted_correlated, dtype=np.float64)),
                "predicted_split": torch.from_numpy(np.asarray(self.predicted_split, dtype=np.float64)),
                "weight_sum": torch.zeros(0) if self.weight_sum is None else self.weight_sum.cpu(),
                "memory": torch.from_numpy(np.asarray(self.memory, dtype=np.float64)),
                "noise_sum": torch.from_numpy(np.asarray(self.noise_sum, dtype=np.float64)),
                "noise_count": self.noise_count,
                "vectors": self.vectors.cpu(), "projections": self.projections.cpu(),
                "window_end": -1 if self.window_end is None else int(self.window_end)}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self.labels = list(state["labels"])
        self.eigenvalues, self.predicted = state["eigenvalues"].numpy(), state["predicted"].numpy()
        # checkpoints from before the correlated prediction: none (the uncorrelated one as before)
        self.predicted_correlated = state.get("predicted_correlated", torch.full((len(self.predicted),), math.nan)).numpy()
        self.predicted_split = state.get("predicted_split", torch.full((len(self.predicted),), math.nan)).numpy()
        self.memory = state.get("memory", torch.ones(1)).numpy()
        # a window begun before the split prediction existed goes without it
        weight_sum = state.get("weight_sum", torch.zeros(0))
        self.weight_sum = weight_sum.to(self.device) if weight_sum.numel() else None
        self.noise_sum, self.noise_count = state["noise_sum"].numpy(), state["noise_count"]
        self.vectors = state["vectors"].to(self.device)
        self.projections = state["projections"].to(self.device)
        self.window_end = None if state["window_end"] < 0 else int(state["window_end"])
