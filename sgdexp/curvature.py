"""Curvature of the full training loss: Hessian-vector products, Lanczos eigenpairs, Hutchinson trace.

`loss_hvp(source)` is the Hessian of L(θ) = 1/N Σ_i ℓ_i(θ) at the model's current weights as an
operator on flat vectors (parameters in `source.params` order), over all N training samples in chunks
of `source.chunk_size`, in eval mode like the per-sample gradients (BatchNorm normalises with its
running statistics, so H is the Hessian of the loss the per-sample gradients differentiate). It goes
through `torch.func` (forward-over-reverse: jvp of grad of a functional_call), so `.grad`, the model's
mode and its buffers are left as they were, and k vectors are one vmap: the forward pass and the
gradient are shared by the k products, only the tangents are batched.

`top_eigenpairs` and `hutchinson_trace` take any HVP operator (a model's, a landscape's, a matrix's).
Lanczos is scipy's `eigsh` (ARPACK, implicitly restarted) over a `LinearOperator` whose matvec is our
HVP: scripts/bench_curvature.py measured it against curvlinops' `HessianLinearOperator` + `eigsh` on
the default MLP over the full digits set, and the torch.func HVP is the faster matvec there (see
README, "Curvature and escape statistics"); curvlinops has no batched (k-vector) product, which the
Hutchinson trace needs.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from sgdexp.gradients import PER_SAMPLE_BUDGET, GradientSource

HVP = Callable[[torch.Tensor], torch.Tensor]


def loss_hvp(source: GradientSource, block: Optional[int] = None) -> HVP:
    """v ↦ H v for the Hessian H of the full training loss at the current weights.

    `v` is (dim,) or (k, dim), any float dtype, on the model's device; the result has v's shape and
    dtype. The weights are read at each call (the operator follows the model as it trains).

    Each product is a second backward pass through the graph of the gradient (reverse over reverse).
    When the training set is one chunk (N ≤ `chunk_size`), that graph is built once and reused for
    as long as no parameter or buffer changes (their version counters say so), which halves the
    cost of a product: an HVP on the default MLP over digits costs about 3 gradient evaluations
    instead of 6 (scripts/bench_curvature.py). With several chunks it is rebuilt chunk by chunk, so
    memory stays that of one chunk's backward pass.

    `block`: vectors per batched backward pass (`is_grads_batched`). Default: 1 on CPU, where
    batching measured slower per vector than a loop (a product of the default MLP is already a
    large matmul; k at once multiplies the memory traffic: 15 ms/vector at k=1, 20 at k=4, 27 at
    k=16, under load), and up to `PER_SAMPLE_BUDGET` numbers of vectors on accelerators, where
    small products would leave the device idle."""
    model, n, params = source.model, source.n_train, source.params
    dtype, device = params[0].dtype, params[0].device
    if block is None:
        block = 1 if device.type == "cpu" else max(1, PER_SAMPLE_BUDGET // source.dim)
    cache: dict = {}

    def weights_key() -> tuple:
        return tuple((t.data_ptr(), t._version) for t in (*params, *model.buffers()))

    def chunk_grads(x: torch.Tensor, y: torch.Tensor) -> tuple:
        loss = source.loss_fn(model(x), y) * (len(x) / n)
        return torch.autograd.grad(loss, params, create_graph=True)

    def gradient_graphs() -> Iterator[tuple]:
        if n > source.chunk_size:
            cache.clear()
            yield from (chunk_grads(x, y) for _, x, y in source._chunks())
            return
        key = weights_key()
        if cache.get("key") != key:
            cache.clear()
            _, x, y = next(source._chunks())
            cache["grads"], cache["key"] = chunk_grads(x, y), key
        yield cache["grads"]

    def products(grads: tuple, vs: torch.Tensor) -> torch.Tensor:
        """H_chunk @ each row of vs, as (k, dim); parameters whose gradient is constant give zeros."""
        k = len(vs)
        parts = [part.reshape(k, *p.shape) if k > 1 else part.view_as(p)
                 for part, p in zip(vs.split(source.numels, dim=1), params)]
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        hs = torch.autograd.grad([grads[i] for i in live], params, [parts[i] for i in live], retain_graph=True,
                                 allow_unused=True, materialize_grads=True, is_grads_batched=k > 1)
        return torch.cat([h.reshape(k, -1) for h in hs], dim=1)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        single = v.dim() == 1
        vs = (v.unsqueeze(0) if single else v).to(dtype)
        out = torch.zeros_like(vs)
        with torch.enable_grad(), source._model_mode(training=False):
            for grads in gradient_graphs():
                for b0 in range(0, len(vs), block):
                    out[b0 : b0 + block] += products(grads, vs[b0 : b0 + block])
        out = out.to(v.dtype)
        return out[0] if single else out

    return hvp


def _default_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def top_eigenpairs(hvp: HVP, dim: int, k: int = 1, which: str = "LA", tol: float = 1e-3,
                   max_iter: Optional[int] = None, generator: Optional[torch.Generator] = None,
                   device: Optional[torch.device] = None) -> Tuple[np.ndarray, torch.Tensor]:
    """The k largest (`which="LA"`, sorted descending) or smallest (`"SA"`, ascending) eigenvalues of
    the symmetric operator `hvp` on R^dim, and their unit eigenvectors as a (k, dim) tensor on
    `device` (float32), by Lanczos (scipy's eigsh, relative tolerance `tol`, at most `max_iter`
    restarts), started from a Gaussian vector drawn from `generator` (seed 0 when None)."""
    if which not in ("LA", "SA"):
        raise ValueError(f"which={which!r}: 'LA' (largest) or 'SA' (smallest)")
    if not 1 <= k < dim:
        raise ValueError(f"k={k}: between 1 and dim - 1 = {dim - 1}")
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = _default_generator(generator)
    v0 = torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device).cpu().numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1)).to(device)
        return hvp(v).detach().double().cpu().numpy()

    op = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    values, vectors = eigsh(op, k=k, which=which, tol=tol, maxiter=max_iter, v0=v0)
    order = np.argsort(-values if which == "LA" else values)
    values, vectors = values[order], vectors[:, order]
    return values, torch.from_numpy(np.ascontiguousarray(vectors.T)).float().to(device)


def hutchinson_trace(hvp: HVP, dim: int, probes: int = 100, generator: Optional[torch.Generator] = None,
                     device: Optional[torch.device] = None) -> Tuple[float, float]:
    """tr H ≈ mean of zᵀHz over `probes` Rademacher vectors z (drawn from `generator`, seed 0 when
    None), and the standard error of that mean. All probes go through `hvp` as one (probes, dim)
    batch (the operator bounds its own memory)."""
    if probes < 2:
        raise ValueError(f"probes={probes}: at least 2 (the standard error needs two)")
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = _default_generator(generator)
    z = torch.randint(0, 2, (probes, dim), generator=generator, device=generator.device)
    z = z.float().mul_(2).sub_(1).to(device)
    samples = (z * hvp(z)).double().sum(dim=1).cpu().numpy()
    return float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(probes))


def sharpness(source: GradientSource, k: int = 1, probes: int = 100, tol: float = 1e-3,
              generator: Optional[torch.Generator] = None) -> Dict[str, float]:
    """Sharpness of the full training loss at the current weights: `top_eigenvalue` (Lanczos, relative
    tolerance `tol`), `eigenvalue_<i>` for i < k (descending, eigenvalue_0 = top_eigenvalue),
    `trace` and `trace_se` (Hutchinson, `probes` Rademacher probes)."""
    generator = _default_generator(generator)
    device = source.params[0].device
    hvp = loss_hvp(source)
    values, _ = top_eigenpairs(hvp, source.dim, k=k, which="LA", tol=tol, generator=generator, device=device)
    trace, trace_se = hutchinson_trace(hvp, source.dim, probes=probes, generator=generator, device=device)
    result = {"top_eigenvalue": float(values[0]), "trace": trace, "trace_se": trace_se}
    result.update({f"eigenvalue_{i}": float(v) for i, v in enumerate(values)})
    return result
