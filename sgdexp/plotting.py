"""Figures without pyplot: `matplotlib.figure.Figure` needs no GUI backend and no global state, so
runs in threads, joblib workers and headless machines draw the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

from matplotlib.figure import Figure


def new_figure(ncols: int = 1, nrows: int = 1, size: Tuple[float, float] = (5.0, 3.6)):
    """(fig, axes) with `nrows` × `ncols` panels of `size` inches each (axes squeezed as in pyplot)."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write `fig` as a PNG (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
