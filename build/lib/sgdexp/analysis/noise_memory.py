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
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from sgdexp.analysis.base import Analysis, CoordinateSample, Measurement, layer_quantiles
from sgdexp.stats import autocorrelation, hurst_exponent


class NoiseMemory(Analysis):
    records_steps = True

    def __init__(self, cfg, source, noise_cfg, seed, steps):
        super().__init__(cfg, source, noise_cfg, seed, steps)
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
        return self._window_start(step) is not None

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
            scalars[f"noise_memory/hurst_{method}/median"] = float(np.nanmedian(h))
            if self.cfg.projections:
                scalars[f"noise_memory/hurst_{method}/projections"] = float(np.nanmedian(h[k:]))
            if self.coords:
                scalars.update(layer_quantiles(f"noise_memory/hurst_{method}", h[:k], self.coords.layers))
            arrays[f"noise_memory/hurst_{method}"] = h
        max_lag = min(self.cfg.max_lag, len(X) - 1)
        acf = np.nanmean(np.asarray(autocorrelation(X, max_lag, dim=0)).reshape(max_lag + 1, -1), axis=1)
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
