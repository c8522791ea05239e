"""Array plumbing shared by the estimators: torch/numpy in, float64 numpy out.

Every estimator in :mod:`sgdexp.stats` takes one array (numpy array, torch tensor or
anything :func:`numpy.asarray` accepts) with the time/sample axis ``dim`` and treats all
other axes as independent series. Internally it works on a float64 numpy array of shape
``(n_series, n)`` and reshapes the per-series answers back to ``x.shape`` without ``dim``.
"""

from __future__ import annotations

import math

import numpy as np


def to_numpy(x, keep_float32: bool = False) -> np.ndarray:
    """float64 numpy copy/view of ``x`` (torch tensors are detached and moved to CPU);
    `keep_float32`: float32 input stays float32 (no copy where none is needed)."""
    keep = ("float32", "float64") if keep_float32 else ("float64",)
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.dtype.is_complex:
            raise TypeError("complex input is not supported")
        x = x.numpy() if str(x.dtype).removeprefix("torch.") in keep else x.double().numpy()
    a = np.asarray(x)
    return a if a.dtype.name in keep else a.astype(np.float64)


def as_series(x, dim: int = 0, pooled: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``(X, batch_shape)`` with ``X`` of shape ``(prod(batch_shape), n)``.

    ``pooled=True`` flattens every entry of ``x`` into one series (``batch_shape == ()``).
    """
    a = to_numpy(x)
    if a.ndim == 0:
        raise ValueError("need at least one axis of samples")
    if a.size == 0 and (pooled or a.shape[dim] == 0):
        raise ValueError(f"need at least one sample: x of shape {a.shape} has none along dim={dim}")
    if pooled:
        return a.reshape(1, -1), ()
    a = np.moveaxis(a, dim, -1)
    batch = a.shape[:-1]
    return a.reshape(-1, a.shape[-1]), batch


def from_series(values: np.ndarray, batch: tuple[int, ...]):
    """Reshape per-series results ``(n_series,)`` back to ``batch``; a scalar batch gives a float."""
    values = np.asarray(values, dtype=np.float64)
    if batch == ():
        return float(values.reshape(-1)[0])
    return values.reshape(batch)


def parabolic_argmin(q: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per-row minimiser of ``q`` (rows x grid), refined by a parabola through the 3 grid points
    around the discrete minimum (``grid`` must be uniformly spaced). Rows that are all NaN give NaN.
    """
    q = np.where(np.isfinite(q), q, np.inf)
    i = np.argmin(q, axis=1)
    bad = ~np.isfinite(q[np.arange(len(q)), i])
    j = np.clip(i, 1, len(grid) - 2)
    rows = np.arange(len(q))
    y0, y1, y2 = q[rows, j - 1], q[rows, j], q[rows, j + 1]
    h = grid[1] - grid[0]
    denom = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where((denom > 0) & np.isfinite(denom), 0.5 * (y0 - y2) / denom, 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    # at the boundary keep the boundary point unless the parabola points inwards
    out = grid[j] + shift * h
    at_edge = (i == 0) | (i == len(grid) - 1)
    out = np.where(at_edge, grid[i], out)
    out = np.where(bad, np.nan, out)
    return out


CHUNK_ELEMENTS = 1 << 22  # series are processed in chunks of about this many samples (memory)


def apply_chunked(fn, X: np.ndarray, *args) -> np.ndarray:
    """``fn(X[chunk], *args)`` over row chunks of about :data:`CHUNK_ELEMENTS` samples, concatenated.

    Bounds the scratch memory of an estimator (complex copies, periodograms) without a Python
    loop over individual series.
    """
    rows = max(1, CHUNK_ELEMENTS // max(1, X.shape[1]))
    if len(X) <= rows:
        return fn(X, *args)
    return np.concatenate([fn(X[i : i + rows], *args) for i in range(0, len(X), rows)])


def finite_row_means(values: np.ndarray, empty: float = math.nan) -> np.ndarray:
    """Each row's mean over its finite values; `empty` where a row has none (without numpy's
    empty-slice warning: a dead unit's zero noise, the log of an exact zero)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), empty)


def finite_median(values: np.ndarray) -> float:
    """The median of the finite values (NaN, without numpy's all-NaN warning, when there are none)."""
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan
