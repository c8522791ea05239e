"""Straight-line fits with their uncertainty: the form of every escape-time law (log mean escape time
linear in B/η, 1/σ², 1/sharpness, ...)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class LineFit:
    """y ≈ slope·x + intercept over `n` points; `r2` the coefficient of determination, `slope_se` the
    standard error of the slope (NaN with two points)."""

    slope: float
    intercept: float
    r2: float
    n: int
    slope_se: float


def line_fit(x, y) -> LineFit:
    """Least-squares line through (x, y) by scipy.stats.linregress; needs ≥ 2 distinct x."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x ({x.size}) and y ({y.size}) differ in length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    if np.unique(x).size < 2:
        raise ValueError("a line needs at least two distinct x values")
    fit = stats.linregress(x, y)
    slope_se = float(fit.stderr) if x.size > 2 else float("nan")
    return LineFit(float(fit.slope), float(fit.intercept), float(fit.rvalue ** 2), int(x.size), slope_se)
