r"""Gradient-noise quantities computed from arrays of gradients (no model code).

Inputs are numpy arrays or torch tensors (any device); the work is done in torch float64 on
the input's device, in chunks of rows so that an (N, d) gradient matrix is never copied whole.
Scalars come back as Python floats, small matrices as numpy arrays.

Notation (McCandlish, Kaplan, Amodei et al. 2018, "An empirical model of large-batch
training"): G = true (full-batch) gradient, per-example gradients :math:`g_i` with covariance
:math:`\Sigma` (d x d), a minibatch gradient :math:`g_B` (mean of B examples) has
:math:`E g_B = G`, :math:`\mathrm{Cov}(g_B) = \Sigma/B` and hence
:math:`E|g_B|^2 = |G|^2 + \mathrm{tr}(\Sigma)/B`. The *simple noise scale* is
:math:`B_\text{simple} = \mathrm{tr}(\Sigma)/|G|^2`: the batch size at which the gradient noise
and signal have equal size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import math

import numpy as np
import torch

__all__ = [
    "NoiseScale", "gradient_noise_scale", "noise_scale_two_batch", "gradient_snr",
    "Alignment", "covariance_hessian_alignment",
]

_CHUNK = 256  # rows per chunk


def _np_to_torch(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def _t(x) -> torch.Tensor:
    """float64 torch view/copy of x (numpy arrays are wrapped without copying when possible)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return _np_to_torch(np.asarray(x, dtype=np.float64))


def _rows(x) -> torch.Tensor:
    """(N, ...) -> (N, d) without converting dtype yet (chunks are converted on the fly)."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        x = _np_to_torch(x if x.dtype.kind == "f" else x.astype(np.float64))
    x = x.detach()
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"need an (N, ...) array of N >= 1 gradients, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _row_mean(G: torch.Tensor) -> torch.Tensor:
    """float64 mean over rows of (N, d) G, chunked."""
    mean = torch.zeros(G.shape[1], dtype=torch.float64, device=G.device)
    for i in range(0, G.shape[0], _CHUNK):
        mean += G[i : i + _CHUNK].to(torch.float64).sum(0)
    return mean / G.shape[0]


def _sum_sq_dev(G: torch.Tensor, center) -> float:
    """sum_i |g_i - center|^2 over the rows of G, chunked."""
    ss = 0.0
    for i in range(0, G.shape[0], _CHUNK):
        ss += float(((G[i : i + _CHUNK].to(torch.float64) - center) ** 2).sum())
    return ss


@dataclass(frozen=True)
class NoiseScale:
    """``b_simple = trace_cov / grad_sq_norm``.

    ``trace_cov`` is tr(Sigma) of the PER-EXAMPLE gradient covariance (so a minibatch
    gradient of size B has noise tr(Sigma)/B), ``grad_sq_norm`` is |G|^2.
    """

    b_simple: float
    trace_cov: float
    grad_sq_norm: float


def gradient_noise_scale(grads, full_grad=None, batch_size: int = 1) -> NoiseScale:
    r"""Simple noise scale :math:`B_\text{simple} = \mathrm{tr}(\Sigma)/|G|^2` from gradient samples.

    Parameters
    ----------
    grads : (N, ...) array or tensor
        N gradient samples; row i is the mean gradient over ``batch_size`` i.i.d. examples
        (``batch_size=1``: per-example gradients). Trailing axes are flattened into d.
    full_grad : (...) array or tensor, optional
        The exact full-batch gradient G. If given,
        :math:`\mathrm{tr}\Sigma = B\cdot\frac1N\sum_i|g_i - G|^2` and :math:`|G|^2` is exact.
        If ``None``, G is estimated by the row mean :math:`\bar g`:
        :math:`\mathrm{tr}\Sigma = B\cdot\frac{1}{N-1}\sum_i|g_i-\bar g|^2` (unbiased) and
        :math:`|G|^2 = |\bar g|^2 - \mathrm{tr}\Sigma/(BN)` (unbiased; it can come out <= 0
        when the noise swamps the signal, and then ``b_simple`` is ``inf``).
    batch_size : int
        B, the number of examples averaged in each row.

    Returns
    -------
    :class:`NoiseScale` (Python floats).
    """
    G = _rows(grads)
    N = G.shape[0]
    B = float(batch_size)
    if full_grad is None:
        if N < 2:
            raise ValueError("need at least 2 gradient samples when full_grad is not given")
        mean = _row_mean(G)
        denom = N - 1
    else:
        mean = _t(full_grad).reshape(-1).to(G.device)
        if mean.numel() != G.shape[1]:
            raise ValueError(f"full_grad has {mean.numel()} entries, grads rows have {G.shape[1]}")
        denom = N
    trace = B * _sum_sq_dev(G, mean) / denom
    g2 = float(mean @ mean)
    if full_grad is None:
        g2 -= trace / (B * N)
    return NoiseScale(b_simple=trace / g2 if g2 > 0 else float("inf"), trace_cov=trace, grad_sq_norm=g2)


def trace_from_minibatch_noise(sq_norms, batch_size: int, n: int) -> tuple[float, float]:
    r"""tr C and its standard error from squared norms :math:`|g_B - \nabla L|^2` of M minibatch noises.

    Batches of B samples drawn without replacement from n have noise covariance
    :math:`\frac{C}{B}\frac{n-B}{n-1}` (C: the per-sample covariance with divisor n), so
    :math:`\mathrm{tr}\,C = B\frac{n-1}{n-B}\,\overline{|\xi|^2}` (with-replacement batches, or n = inf:
    :math:`B\,\overline{|\xi|^2}`). The standard error is that of the mean over the M batches.
    """
    sq = _t(sq_norms).reshape(-1)
    if sq.numel() < 2:
        raise ValueError("trace_from_minibatch_noise needs at least 2 minibatches")
    factor = batch_size * (n - 1) / (n - batch_size) if n > batch_size else float(batch_size)
    return factor * float(sq.mean()), factor * float(sq.std()) / math.sqrt(sq.numel())


def noise_scale_two_batch(g_small_sq_norms, g_big_sq_norms, b_small: int, b_big: int) -> NoiseScale:
    r"""Unbiased two-batch-size estimator of McCandlish et al. (2018), Appendix A.

    From squared norms of gradients measured at two batch sizes
    :math:`B_\text{small} < B_\text{big}` (e.g. one worker's local batch and the all-reduced
    batch of the same step), using :math:`E|g_B|^2 = |G|^2 + \mathrm{tr}\Sigma/B`:

    .. math:: |\mathcal G|^2 = \frac{B_\text{big}|g_{B_\text{big}}|^2 - B_\text{small}|g_{B_\text{small}}|^2}
                                      {B_\text{big} - B_\text{small}}, \qquad
              \mathcal S = \frac{|g_{B_\text{small}}|^2 - |g_{B_\text{big}}|^2}
                                {1/B_\text{small} - 1/B_\text{big}},

    each unbiased for :math:`|G|^2` and :math:`\mathrm{tr}\Sigma`. No per-example gradients are
    needed. Both are very noisy per step, so (as the paper does with exponential moving
    averages) the squared norms of all given measurements are averaged FIRST and
    :math:`B_\text{simple} = \mathcal S / |\mathcal G|^2` is the ratio of the averaged
    estimates (a ratio of per-step estimates would be badly biased).

    Parameters
    ----------
    g_small_sq_norms, g_big_sq_norms : scalar or 1-D array-like / tensor
        :math:`|g_{B_\text{small}}|^2` and :math:`|g_{B_\text{big}}|^2`, one per measurement
        (the two arrays may have different lengths).
    b_small, b_big : int
        The batch sizes, ``b_small < b_big``.

    Returns
    -------
    :class:`NoiseScale` with ``trace_cov`` = S, ``grad_sq_norm`` = |G|^2 (``b_simple`` is
    ``inf`` when the |G|^2 estimate is <= 0).
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small}, b_big={b_big}")
    s = float(_t(g_small_sq_norms).mean())
    b = float(_t(g_big_sq_norms).mean())
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    tr = (s - b) / (1.0 / b_small - 1.0 / b_big)
    return NoiseScale(b_simple=tr / g2 if g2 > 0 else float("inf"), trace_cov=tr, grad_sq_norm=g2)


def _snr_one(x, debias: bool) -> float:
    G = _rows(x)
    N = G.shape[0]
    if N < 2:
        raise ValueError("gradient_snr needs at least 2 gradient samples per layer")
    mean = _row_mean(G)
    return _snr(float(mean @ mean), _sum_sq_dev(G, mean) / (N - 1), N, debias)


def _snr(sig: float, var_sum: float, n: int, debias: bool) -> float:
    if debias:
        sig -= var_sum / n
    return sig / var_sum if var_sum > 0 else float("inf")


def gradient_snr_from_sums(total, sq_total: float, n: int, *, debias: bool = False) -> float:
    r"""The :func:`gradient_snr` of one layer from running sums, for gradients too many to keep:
    ``total`` = :math:`\sum_i g_i` (a vector), ``sq_total`` = :math:`\sum_i |g_i|^2`, ``n`` samples.

    Uses :math:`\sum_i |g_i - \bar g|^2 = \sum_i |g_i|^2 - n|\bar g|^2` (fine in float64 unless the
    noise is below ~1e-8 of the signal)."""
    if n < 2:
        raise ValueError("gradient_snr_from_sums needs at least 2 gradient samples")
    mean = _t(total).reshape(-1) / n
    sig = float(mean @ mean)
    return _snr(sig, max(0.0, (float(sq_total) - n * sig) / (n - 1)), n, debias)


def gradient_snr(grads_by_layer, *, debias: bool = False):
    r"""Gradient signal-to-noise ratio per layer.

    For one layer with gradient samples :math:`g_1..g_N` (rows; trailing axes flattened into
    the layer's d coordinates),

    .. math:: \mathrm{SNR} = \frac{\frac1d\sum_j \bar g_j^2}{\frac1d\sum_j \widehat{\mathrm{Var}}(g_{\cdot j})}
              = \frac{|\bar g|^2}{\mathrm{tr}\,\widehat{\mathrm{Cov}}(g)},

    i.e. squared norm of the mean over the summed (unbiased, ddof=1) per-coordinate variances
    ("|mean|^2 / mean variance": the 1/d factors cancel). For per-example rows this is
    :math:`|G|^2/\mathrm{tr}\Sigma = 1/B_\text{simple}` of that layer; for rows that are size-B
    minibatch gradients it is the SNR of a minibatch gradient, :math:`B/B_\text{simple}`.
    :math:`|\bar g|^2` overestimates :math:`|G|^2` by :math:`\mathrm{tr}\widehat{\mathrm{Cov}}/N`;
    ``debias=True`` subtracts that (then SNR can be <= 0 when there is no detectable signal).

    Parameters
    ----------
    grads_by_layer : (N, ...) array/tensor, a mapping name -> such array, or a sequence of them
        N samples along axis 0 (N >= 2, the same N is not required across layers).

    Returns
    -------
    float, ``dict`` name -> float, or ``list`` of floats, matching the input.
    """
    if isinstance(grads_by_layer, Mapping):
        return {k: _snr_one(v, debias) for k, v in grads_by_layer.items()}
    if isinstance(grads_by_layer, Sequence) and not isinstance(grads_by_layer, (str, bytes)):
        return [_snr_one(v, debias) for v in grads_by_layer]
    return _snr_one(grads_by_layer, debias)


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`covariance_hessian_alignment`; fields are ``None`` when not computable
    from the inputs given."""

    diag_cosine: float | None
    diag_pearson: float | None
    proj_cosine: float | None
    proj_diag_cosine: float | None
    proj_diag_pearson: float | None
    vcv: np.ndarray | None
    vhv: np.ndarray | None


def _ndim(x) -> int:
    return x.ndim if hasattr(x, "ndim") else np.ndim(x)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos of the angle between two tensors taken as flat vectors; NaN when either is zero."""
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / (a.norm() * b.norm()))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """None below 3 entries: the correlation of two points is ±1 whatever their values."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() < 3:
        return None
    return cosine(a - a.mean(), b - b.mean())


def covariance_hessian_alignment(*, diag_cov=None, diag_hessian=None, eigvecs=None,
                                 hessian_eigvals=None, hessian_proj=None, noise=None,
                                 cov_matvec: Callable | None = None, center: bool = True
                                 ) -> Alignment:
    r"""Alignment of the gradient-noise covariance C with the Hessian H.

    Two views, each computed when its inputs are given:

    * **Diagonals**: cosine and Pearson correlation between diag C and diag H (length d).
      ``diag_cov`` can be given, or is computed from ``noise`` as the per-coordinate variance
      (ddof=1). ``diag_hessian`` must be given (e.g. a Hutchinson estimate).
    * **Top-k Hessian subspace**: with V = ``eigvecs`` (d x k), the k x k matrices
      :math:`V^\top C V` and :math:`V^\top H V`, their Frobenius cosine
      :math:`\langle A, B\rangle_F/(\|A\|_F\|B\|_F)` (``proj_cosine``) and the cosine and
      Pearson correlation of their diagonals. :math:`V^\top H V` is ``diag(hessian_eigvals)``
      when the columns of V are Hessian eigenvectors, or ``hessian_proj`` given directly.
      :math:`V^\top C V` is :math:`P^\top P/(N-1)` with :math:`P = (\text{noise} - \overline{\text{noise}})V`
      (``noise``: N x d samples of gradients or gradient noise), or :math:`V^\top` ``cov_matvec(V)``
      when a function applying C to a d x k matrix is given (it is called with ``eigvecs``
      exactly as passed, numpy or torch, as a d x k matrix).

    Cosines and correlations are scale-free: all are 1 when C = H/B for any B > 0 (the
    "SGD noise covariance ~ Hessian / batch size" hypothesis), whatever B is. Cosines of
    entrywise-positive vectors (diagonals) are dominated by their common scale and stay high
    (an isotropic C against a top-k block with similar eigenvalues already gives ~0.99); the
    Pearson correlations measure whether C is large where H is large.

    Returns
    -------
    :class:`Alignment` with ``diag_cosine``, ``diag_pearson`` (length-d diagonals),
    ``proj_cosine`` (Frobenius), ``proj_diag_cosine``, ``proj_diag_pearson`` (k x k projections;
    the Pearson needs k >= 3: of two entries it is ±1 whatever they are; None below), and the
    matrices ``vcv``, ``vhv`` as numpy arrays.

    Parameters
    ----------
    center : bool
        Subtract the mean of ``noise`` before forming covariances (set False if ``noise`` is
        already centred noise with known zero mean; then the divisor is N).
    """
    dc = dh = vcv = vhv = None
    noise_t = None
    if noise is not None:
        noise_t = _rows(noise)
    if diag_cov is not None:
        dc = _t(diag_cov).reshape(-1)
    elif noise_t is not None and diag_hessian is not None:
        N = noise_t.shape[0]
        mean = _row_mean(noise_t) if center else 0.0
        dc = sum(((noise_t[i : i + _CHUNK].to(torch.float64) - mean) ** 2).sum(0)
                 for i in range(0, N, _CHUNK)) / (N - 1 if center else N)
    if diag_hessian is not None:
        dh = _t(diag_hessian).reshape(-1)
    out = dict(diag_cosine=None, diag_pearson=None, proj_cosine=None, proj_diag_cosine=None,
               proj_diag_pearson=None, vcv=None, vhv=None)
    if dc is not None and dh is not None:
        dh = dh.to(dc.device)
        if dc.numel() != dh.numel():
            raise ValueError(f"diag_cov has {dc.numel()} entries, diag_hessian {dh.numel()}")
        out["diag_cosine"] = cosine(dc, dh)
        out["diag_pearson"] = _pearson(dc, dh)
    if eigvecs is not None:
        V = _t(eigvecs)
        if V.ndim == 1:
            V = V[:, None]
        if hessian_proj is not None:
            vhv = _t(hessian_proj).to(V.device)
        elif hessian_eigvals is not None:
            vhv = torch.diag(_t(hessian_eigvals).reshape(-1)).to(V.device)
        if noise_t is not None:
            N = noise_t.shape[0]
            mean = _row_mean(noise_t) if center else 0.0
            Vd = V.to(noise_t.device)
            P = torch.cat([(noise_t[i : i + _CHUNK].to(torch.float64) - mean) @ Vd
                           for i in range(0, N, _CHUNK)])
            vcv = P.T @ P / (N - 1 if center else N)
        elif cov_matvec is not None:
            V_user = eigvecs if V.ndim == _ndim(eigvecs) else eigvecs[:, None]
            vcv = V.T @ _t(cov_matvec(V_user)).reshape(V.shape).to(V.device)
        if vcv is not None:
            out["vcv"] = vcv.cpu().numpy()
        if vhv is not None:
            out["vhv"] = vhv.cpu().numpy()
        if vcv is not None and vhv is not None:
            vhv = vhv.to(vcv.device)
            out["proj_cosine"] = cosine(vcv, vhv)
            out["proj_diag_cosine"] = cosine(torch.diagonal(vcv), torch.diagonal(vhv))
            out["proj_diag_pearson"] = _pearson(torch.diagonal(vcv), torch.diagonal(vhv))
    return Alignment(**out)
