"""`analysis=[noise_memory]`: the memory of SGD's noise along the trajectory.

Windows of W = `window` consecutive training steps start every `every` steps. In a window, each
step's SGN ξ_t = (the gradient signal the noise mode wrote, e.g. g_B) − ∇L(θ_t) is taken at that
step's own weights (one extra full-gradient pass per recorded step, in the model's training mode
with BatchNorm statistics restored) and recorded on `params` fixed coordinates and `projections`
random unit directions of the whole vector. At the end of a window:

- the Hurst exponent of every series by each of `hurst_methods`: the parametric fGn Whittle fit
  answers "if this were fGn, which H?", and reads short memory (e.g. AR(1)) as H > 0.5; the
  semiparametric local Whittle answers "is there long memory?" and stays at 0.5 for short memory;
- the mean autocorrelation over lags 0…`max_lag` (under `noise.sampler=epoch` the M = N/B batches
  of an epoch sum to zero, which shows as a negative autocorrelation −(M−k)/(M(M−1)) at lags k < M).

Windows do not overlap (`window` > `every` is a config error: one record buffer), and a window
that would end past the run's last step is not begun. At set-up one log line says when nothing will
be measured: no window fits (`start` + `window` > `trainer.steps`), or the noise mode adds no
gradient noise (`noise=gd`, an injected mode at σ = 0, `sgd` with epoch batches of all N samples),
whose SGN is zero: then no step is recorded and no `noise_memory/*` key is logged.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np
import torch

from sgdexp.analysis.base import Analysis, CoordinateSample, Measurement, layer_quantiles
from sgdexp.errors import ConfigError
from sgdexp.stats import autocorrelation, finite_median, finite_row_means, hurst_exponent

log = logging.getLogger(__name__)


def noiseless(noise_cfg, n_train: int) -> Optional[str]:
    """Why the noise mode `noise_cfg` adds no gradient noise (its signal is the full gradient, so the
    SGN is zero at every step), or None when it adds some."""
    name = noise_cfg.name
    if name == "gd":
        return "noise=gd is full-batch GD: its gradient signal is the full gradient"
    sigma = noise_cfg.get("sigma", "matched")
    if name != "sgd" and sigma != "matched" and float(sigma) == 0.0:
        return f"noise={name} at noise.sigma=0 injects nothing into the full gradient"
    if name == "sgd" and noise_cfg.sampler == "epoch" and int(noise_cfg.batch_size) >= n_train:
        return (f"noise=sgd with noise.sampler=epoch and noise.batch_size={noise_cfg.batch_size} draws every batch "
                f"as all {n_train} training samples: full-batch GD")
    return None


class NoiseMemory(Analysis):
    records_steps = True

    def __init__(self, cfg, source, noise_cfg, seed, steps):
        if cfg.window > cfg.every:
            raise ConfigError("analysis.noise_memory.window", cfg.window,
                              f"at most analysis.noise_memory.every={cfg.every} (windows must not overlap)")
        super().__init__(cfg, source, noise_cfg, seed, steps)
        # nothing to record when the mode adds no gradient noise, or no window fits in the run
        why = noiseless(noise_cfg, source.n_train)
        if why is not None:
            self.without_noise(why)
        elif self.start + int(cfg.window) > steps:
            log.info("noise_memory: will not measure in this run: its first window, analysis.noise_memory.window=%d "
                     "steps after analysis.noise_memory.start=%d, would end at step %d, past trainer.steps=%d",
                     cfg.window, self.start, self.start + int(cfg.window), steps)
        self.coords = CoordinateSample(source, cfg.params, self.generator) if cfg.params else None
        device = source.data.x_train.device
        proj = torch.randn(cfg.projections, source.dim, generator=self.generator)
        self.projections = (proj / proj.norm(dim=1, keepdim=True)).to(device)
        width = (len(self.coords) if self.coords else 0) + cfg.projections
        self.window = int(cfg.window)
        self.record = torch.zeros(self.window, width, dtype=torch.float64, device=device)
        self.filled = 0

    def _window_start(self, step: int) -> Optional[int]:
        """The first step of the window containing `step`, if any (steps are 1-based updates)."""
        offset = step - 1 - self.start
        if offset < 0:
            return None
        start = step - offset % self.every
        return start if step - start < self.window and start + self.window - 1 <= self.steps else None

    def observing(self, step: int) -> bool:
        return self.silent is None and self._window_start(step) is not None

    def observe(self, step: int) -> None:
        position = step - self._window_start(step)
        xi = self.source.flat_grad() - self.source.full_grad_vector()
        parts = [xi[self.coords.index]] if self.coords else []
        parts.append(self.projections @ xi)
        self.record[position] = torch.cat(parts).double()
        self.filled = position + 1

    def due(self, step: int) -> bool:
        return self.filled == self.window

    def compute(self, step: int) -> Optional[Measurement]:
        X = self.record.cpu().numpy()
        self.filled = 0
        k = len(self.coords) if self.coords else 0
        scalars: Dict[str, float] = {}
        arrays: Dict[str, np.ndarray] = {}
        for method in self.cfg.hurst_methods:
            h = np.asarray(hurst_exponent(X, dim=0, method=method), dtype=float).reshape(-1)
            scalars[f"noise_memory/hurst_{method}/median"] = finite_median(h)
            if self.cfg.projections:
                scalars[f"noise_memory/hurst_{method}/projections"] = finite_median(h[k:])
            if self.coords:
                scalars.update(layer_quantiles(f"noise_memory/hurst_{method}", h[:k], self.coords.layers))
            arrays[f"noise_memory/hurst_{method}"] = h
        max_lag = min(self.cfg.max_lag, len(X) - 1)
        acf = finite_row_means(np.asarray(autocorrelation(X, max_lag, dim=0)).reshape(max_lag + 1, -1))
        scalars["noise_memory/autocorrelation_lag1"] = float(acf[1])
        arrays["noise_memory/autocorrelation"] = acf
        self.last = scalars
        return Measurement(scalars, arrays)

    def state_dict(self) -> Dict:
        return {**super().state_dict(), "record": self.record.cpu(), "filled": self.filled}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self.record.copy_(state["record"])
        self.filled = state["filled"]
