"""Curvature of the full training loss: Hessian-vector products, Lanczos eigenpairs, trace estimates.

`loss_hvp(source)` is the Hessian of L(θ) = 1/N Σ_i ℓ_i(θ) at the model's current weights as an
operator on flat vectors (parameters in `source.params` order), over all N training samples in chunks
of `source.chunk_size`, in eval mode like the per-sample gradients (BatchNorm normalises with its
running statistics, so H is the Hessian of the loss the per-sample gradients differentiate; it is
differentiated as the affine map it then is, `GradientSource.second_order_mode`). It uses
`torch.autograd.grad` only, so `.grad`, the model's mode and its buffers are left as they were.

`top_eigenpairs` and `hutchinson_trace` take any HVP operator (a model's, a landscape's, a matrix's).

Choices, by measurement (scripts/bench_curvature.py, default MLP over the full digits set, 1 thread):
* the product: reverse over reverse through the gradient's graph, reused between products while the
  weights stay: 9.7 ms a product where a gradient takes 3.1 ms, against 22 ms for torch.func's jvp
  of grad (the first version here; its vmap over k vectors was slower per vector than a loop on
  CPU), and against curvlinops' `HessianLinearOperator` (a vmap'd jvp of grad inside: Lanczos to
  the top eigenvalue took 2-4x ours, a 100-probe matmat about 2x);
* the eigensolver: scipy's `eigsh` (ARPACK, implicitly restarted Lanczos) over a `LinearOperator`:
  19 products to the top eigenvalue at tol 1e-3 with its buffer pair (error ~1e-11; 7-13 without it,
  error ~1e-6, but see `top_eigenpairs`), where PyHessian's power iteration needs 19-35 to reach an
  error of 1e-3 (its own tol=1e-3 test stops at an error of 2e-3 to 8e-3);
* the trace: Hutch++ (see `hutchinson_trace`), 9x smaller standard error than Hutchinson at the
  same 100 products; after Lanczos, Krylov-aware (`KrylovSketch`): the vectors Lanczos multiplied
  already span the top of the spectrum, so tr over their span is exact for free and Hutchinson only
  samples the rest. On the default MLP after 3000 SGD steps, over 40 seeds: Lanczos (k = 2 with its
  buffer pair, tol 0.01: 15 products) then 4 probes gave an RMS error of 0.15 on a trace of 5.77
  (bias 0.01 ± 0.02); without the buffer pair (11 products) 0.24; Hutch++ with 12 probes after the
  same Lanczos (27 products) 0.55.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import ThreadpoolController

from sgdexp.errors import ConfigError
from sgdexp.gradients import PER_SAMPLE_BUDGET, GradientSource

HVP = Callable[[torch.Tensor], torch.Tensor]


def loss_hvp(source: GradientSource, block: Optional[int] = None, indices: Optional[torch.Tensor] = None,
             graph_budget: Optional[int] = None) -> HVP:
    """v ↦ H v for the Hessian H of the training loss at the current weights: over all N training
    samples, or over the samples `indices` (the mean loss of that subset) when given.

    `v` is (dim,) or (k, dim), any float dtype, on the model's device; the result has v's shape and
    dtype. The weights are read at each call (the operator follows the model as it trains).

    Each product is a second backward pass through the graph of the gradient (reverse over reverse).
    Each chunk's graph is built once and reused for as long as no parameter or buffer changes
    (compared with a copy at each call): a product on the default MLP over digits then costs about
    3 gradient evaluations (4 when the graph is rebuilt, 7 for torch.func's jvp of grad). A training
    set of one chunk (N ≤ `chunk_size`) always keeps its graph, which a product needs whole anyway.
    With several chunks, the first ones keep theirs while the tensors those graphs hold stay within
    `graph_budget` bytes (default `graph_budget_bytes`: `trainer.hvp_graph_mib`, else the device's),
    and the rest are built again chunk by chunk at each product, so memory stays the budget plus one
    chunk's backward pass. On the default MLP over 60000 samples of 784 features in 30 chunks,
    keeping all 30 graphs (106 MiB) took a product from 1.27 s to 0.57 s on one thread
    (scripts/bench_hvp_graphs.py).

    `block`: vectors per batched backward pass (`is_grads_batched`). Default: 1 on CPU, where
    batching measured slower per vector than a loop (a product of the default MLP is already a
    large matmul; k at once multiplies the memory traffic: 15 ms/vector at k=1, 20 at k=4, 27 at
    k=16, under load), and up to `PER_SAMPLE_BUDGET` numbers of vectors on accelerators, where
    small products would leave the device idle."""
    params = source.params
    dtype, device = params[0].dtype, params[0].device
    x_all, y_all = source.data.x_train, source.data.y_train
    if indices is not None:
        x_all, y_all = x_all[indices], y_all[indices]
    n, chunk_size = len(x_all), source.chunk_size

    def chunks() -> Iterator[tuple]:
        return ((x_all[i : i + chunk_size], y_all[i : i + chunk_size]) for i in range(0, n, chunk_size))

    if block is None:
        block = 1 if device.type == "cpu" else max(1, PER_SAMPLE_BUDGET // source.dim)
    if graph_budget is None:
        graph_budget = graph_budget_bytes(device, source.graph_budget)
    cache: dict = {}

    def gradient_graphs() -> Iterator[tuple]:
        """Each chunk's gradient with its graph: the kept ones, then the others built anew."""
        if not source.weights_unchanged(cache.get("weights")):  # a pass over d numbers, small next to a product
            cache.update(weights=source.weights_snapshot(), kept=[], room=graph_budget, keeping=True)
        kept = cache["kept"]
        yield from kept
        for x, y in itertools.islice(chunks(), len(kept), None):
            grads, size = gradient_graph(source, x, y, len(x) / n, shared=(x_all, y_all))
            # a prefix of the chunks keeps its graphs (the first chunk past the budget ends it), so
            # that the kept ones are always the first len(kept); one chunk in all is always kept
            if cache["keeping"] and (size <= cache["room"] or n <= chunk_size):
                kept.append(grads)
                cache["room"] -= size
            else:
                cache["keeping"] = False
            yield grads

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
        with torch.enable_grad():
            for grads in gradient_graphs():
                for b0 in range(0, len(vs), block):
                    out[b0 : b0 + block] += products(grads, vs[b0 : b0 + block])
        out = out.to(v.dtype)
        return out[0] if single else out

    return hvp


def check_second_order(source: GradientSource, key: str, value, needed_by: str) -> None:
    """Stop before any work where the loss's second derivative cannot be taken through the model (an
    operation whose backward torch cannot differentiate, beyond those `second_order_mode` replaces),
    naming the model's config `key` and `value`: one product over two training samples
    (milliseconds), where the run would otherwise fail at its first Hessian measurement, perhaps
    hours in."""
    two = torch.arange(min(2, source.n_train), device=source.data.x_train.device)
    try:
        loss_hvp(source, indices=two)(torch.ones(source.dim, device=two.device))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not any(s in reason for s in ("is not implemented", "once_differentiable")):
            raise
        raise ConfigError(key, value, f"a model whose loss torch can differentiate twice, which {needed_by} "
                                      f"needs (here: {reason})") from None


def gradient_graph(source: GradientSource, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0,
                   shared: Sequence[torch.Tensor] = ()) -> Tuple[tuple, int]:
    """The gradient of `scale` times the mean loss over (x, y), with its graph (for products), and
    the bytes that graph and the gradient hold beyond the weights and the tensors `shared` (the data
    x and y are views of)."""
    # the model's mode and BatchNorm's hooks matter where it runs forward, not for products on a
    # kept graph (no hooks set and removed at every product)
    with source.second_order_mode():
        grads, held = with_graph_bytes(lambda: torch.autograd.grad(
            source.loss_fn(source.model(x), y) * scale, source.params, create_graph=True),
            (*source.params, x, y, *shared))
    return grads, held + sum(g.nbytes for g in grads)


def with_graph_bytes(fn: Callable[[], Any], shared: Sequence[torch.Tensor] = ()) -> Tuple[Any, int]:
    """fn()'s result, and the bytes of the tensors autograd saved for backward while it ran: what
    the graphs it built hold for as long as they live. Each storage is counted once, and none that
    a tensor of `shared` (the weights, the data) already holds."""
    known = {t.untyped_storage().data_ptr() for t in shared}
    held: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in known:
            held[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(held.values())


GRAPH_BUDGET = 1 << 30  # bytes of kept gradient graphs on a CPU (see `graph_budget_bytes`)


def graph_budget_bytes(device: torch.device, configured: Optional[int] = None) -> int:
    """The bytes `loss_hvp` lets the chunks' kept gradient graphs hold: `configured` where set (the
    gradient source's, `trainer.hvp_graph_mib`), else 1 GiB in main memory and a quarter of what is
    free on a CUDA device when the operator is made. Measured per chunk of 2048
    samples (`with_graph_bytes`): the default MLP on 784 features 3.5 MiB (all 60k MNIST-sized
    samples fit), `model=cnn` on 28x28 images 787 MiB (one chunk of MNIST's 30 on a CPU), a
    ResNet-20 on CIFAR-10 6 GiB (none on a CPU; 5 of 25 on a GPU with 130 GB free)."""
    if configured is not None:
        return configured
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return GRAPH_BUDGET


class KrylovSketch:
    """The vectors an eigensolver multiplied by H (at most `max_vectors`, in the products' dtype on
    their device) and their quadratic forms x_iᵀ H x_j, which the products already give: over the
    span of the vectors, tr(P H P) is exact at no further product (Krylov-aware trace estimation,
    Chen & Hallman 2023). Lanczos to the top eigenpairs builds a Krylov space that holds the top of
    the spectrum better than Hutch++'s sketch H S of as many products, and the outliers there are
    what dominates Hutchinson's variance on a Hessian. `hutchinson_trace(..., sketch=)` uses it.

    Only symmetry is used (x_iᵀ H x_j = x_jᵀ H x_i), so a product's vector is kept and the products
    themselves are not: memory is `max_vectors` vectors of dim, raised to the eigensolver's basis
    size by `top_eigenpairs` (ARPACK holds that many in float64 anyway)."""

    def __init__(self, dim: int, max_vectors: Optional[int] = None):
        # 32 vectors, fewer for large models (2^24 numbers, 64 MB: as many as Hutch++'s 8 sketch
        # vectors of a 2M-parameter model), at least 8
        self.dim = dim
        self.max_vectors = max_vectors or min(32, max(8, (1 << 24) // dim))
        self.store: Optional[torch.Tensor] = None  # (max_vectors, dim), allocated by the first `add`
        self.count = 0
        self.forms = torch.zeros(self.max_vectors, self.max_vectors, dtype=torch.float64)

    @property
    def vectors(self) -> torch.Tensor:
        """The vectors kept, as (count, dim) rows."""
        return self.store[: self.count] if self.store is not None else torch.zeros(0, self.dim)

    def reserve(self, n: int) -> None:
        """Room for at least n vectors: an eigensolver with a basis of n vectors (ARPACK's `ncv`,
        held in float64) lets the sketch keep as many."""
        if n > self.max_vectors:
            forms = torch.zeros(n, n, dtype=torch.float64)
            forms[: self.max_vectors, : self.max_vectors] = self.forms
            if self.store is not None:
                self.store = torch.cat([self.store, self.store.new_empty(n - self.max_vectors, self.dim)])
            self.forms, self.max_vectors = forms, n

    def add(self, x: torch.Tensor, hx: torch.Tensor) -> None:
        """Keep x (1-d) and its forms with the vectors kept so far, given hx = H x. x is kept in
        hx's dtype, the precision of the product (a float32 model multiplies float32(x))."""
        j = self.count
        if j == self.max_vectors:
            return
        hx = hx.detach()
        if self.store is None:
            # empty: only the rows written are read (`vectors`), and zeros would touch every page of
            # max_vectors rows (6 ms of a 7 ms sketch on the default MLP, fresh pages from the OS)
            self.store = torch.empty(self.max_vectors, self.dim, dtype=hx.dtype, device=hx.device)
        self.store[j] = x.detach()
        self.count += 1
        forms = (self.store[: j + 1] @ hx).double().cpu()  # x_iᵀ H x_j for i ≤ j
        self.forms[: j + 1, j] = self.forms[j, : j + 1] = forms

    def basis(self) -> Tuple[torch.Tensor, float]:
        """(Q, tr(Qᵀ H Q)): an orthonormal basis of the vectors' span as (r, dim) float32 rows, and
        the trace of H over it. Orthonormalised through the Gram matrix (vectors from Lanczos are
        nearly orthonormal already); directions below 1e-6 of its largest eigenvalue are dropped,
        so that no nearly dependent direction amplifies the products' rounding."""
        x, m = self.vectors.double(), self.count
        gram_values, gram_vectors = torch.linalg.eigh((x @ x.T).cpu())
        keep = gram_values > 1e-6 * gram_values.max()
        w = gram_vectors[:, keep] / gram_values[keep].sqrt()  # Q = Wᵀ X
        trace = float(torch.trace(w.T @ self.forms[:m, :m] @ w))
        return (w.T.to(x.device) @ x).float(), trace


def _default_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def top_eigenpairs(hvp: HVP, dim: int, k: int = 1, which: str = "LA", tol: float = 1e-3,
                   max_iter: Optional[int] = None, generator: Optional[torch.Generator] = None,
                   device: Optional[torch.device] = None, sketch: Optional[KrylovSketch] = None
                   ) -> Tuple[np.ndarray, torch.Tensor]:
    """The k largest (`which="LA"`, sorted descending) or smallest (`"SA"`, ascending) eigenvalues of
    the symmetric operator `hvp` on R^dim, and their unit eigenvectors as a (k, dim) tensor on
    `device` (float32), by Lanczos (scipy's eigsh, relative tolerance `tol`, at most `max_iter`
    restarts), started from a Gaussian vector drawn from `generator` (seed 0 when None).
    `sketch`: keeps the vectors multiplied, for the trace (`hutchinson_trace(..., sketch=)`)."""
    if which not in ("LA", "SA"):
        raise ValueError(f"which={which!r}: 'LA' (largest) or 'SA' (smallest)")
    if not 1 <= k < dim:
        raise ValueError(f"k={k}: between 1 and dim - 1 = {dim - 1}")
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = _default_generator(generator)
    v0 = torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device).cpu().numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1)).to(device)
        hv = hvp(v).detach()
        if sketch is not None:
            sketch.add(v, hv)
        return hv.double().cpu().numpy()

    op = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    # ARPACK's own work is O(dim · ncv) per step, level-2 BLAS too small to share: one BLAS thread
    # (torch's threads, which run the HVPs, are not affected). With scipy's 2 OpenBLAS threads the
    # solver's overhead was 0.4 s instead of 0.1 s next to 21 HVPs of 0.45 s on a busy 2-core machine.
    # One eigenpair more than asked, a buffer (ARPACK's users' guide advises it): asked for exactly k,
    # Lanczos can settle on λ_{k+1} in place of λ_k when the start vector holds little of v_k and the
    # two are close. Measured over 30-40 starts per model on five MLPs on digits at tol 0.01: asked for
    # k = 1, one start returned λ2 for λ1 (4.4% low, at tol 1e-3 too); for k = 2, one returned λ3 for
    # λ2 (9-10% low); with k + 1 pairs and the basis below, none did (a basis of 6 or 8 vectors still
    # did, once each). Tested on a spectrum with λ2 = 0.96 λ1.
    # Lanczos basis size: scipy's default (20) builds 20 vectors before its first convergence test;
    # 4 nev + 2 converges on its first test as a rule: 15 products for k = 2 (nev = 3) on the default
    # MLP, where k = 2 alone took 11-16 and k = 1 alone 7-8
    nev, ncv = lanczos_basis(k, dim)
    if sketch is not None:
        sketch.reserve(ncv)
    with _blas_threads().limit(limits=1, user_api="blas"):
        values, vectors = eigsh(op, k=nev, which=which, tol=tol, maxiter=max_iter, v0=v0, ncv=ncv)
    order = np.argsort(-values if which == "LA" else values)[:k]
    values, vectors = values[order], vectors[:, order]
    return values, torch.from_numpy(np.ascontiguousarray(vectors.T)).float().to(device)


def lanczos_basis(k: int, dim: int) -> Tuple[int, int]:
    """(eigenpairs asked of ARPACK, Lanczos basis size) for k eigenpairs of an operator on R^dim:
    k + 1 (a buffer pair) and 4 (k + 1) + 2 vectors, at most dim (see `top_eigenpairs`)."""
    nev = min(k + 1, dim - 1)
    return nev, min(dim, 4 * nev + 2)


def most_lanczos_eigenpairs(dim: int) -> int:
    """The most eigenpairs `top_eigenpairs` finds with its full basis on R^dim (4 (k + 1) + 2 ≤ dim).
    Beyond, the basis is the whole space: ARPACK then holds dim² numbers, and scipy's `eigsh` falls
    back to a dense matrix from dim products at k ≥ dim − 1, which no model but a small one survives
    (a dense Hessian is `analysis.curvature.exact_below`'s job)."""
    return max(0, (dim - 6) // 4)


_CONTROLLER: Optional[ThreadpoolController] = None


def _blas_threads() -> ThreadpoolController:
    """One threadpoolctl controller per process: building one scans the loaded libraries (24 ms,
    an eighth of a curvature measurement on the default MLP), using it costs microseconds."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


TRACE_METHODS = ("hutch++", "hutchinson")


def _rademacher(n: int, dim: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    z = torch.randint(0, 2, (n, dim), generator=generator, device=generator.device)
    return z.float().mul_(2).sub_(1).to(device)


def _quadratic_forms(hvp: HVP, z: torch.Tensor) -> torch.Tensor:
    """zᵢᵀ H zᵢ for each row, in float64, in blocks of `PER_SAMPLE_BUDGET` numbers of probes."""
    block = max(1, PER_SAMPLE_BUDGET // z.shape[1])
    return torch.cat([(b * hvp(b)).double().sum(dim=1) for b in z.split(block)])


def hutchinson_trace(hvp: HVP, dim: int, probes: int = 100, generator: Optional[torch.Generator] = None,
                     device: Optional[torch.device] = None, method: str = "hutch++",
                     sketch: Optional[KrylovSketch] = None) -> Tuple[float, float]:
    """tr H from `probes` Hessian-vector products, and the standard error of the estimate; probe
    vectors are Rademacher, drawn from `generator` (seed 0 when None) on `device`.

    `method="hutchinson"`: the mean of zᵀHz over `probes` probes (memory: a block of probes).
    `method="hutch++"` (default; Meyer, Musco, Musco & Woodruff 2021): a third of the products
    sketch the top of the spectrum (Q = orth(H S)), a third take tr(QᵀHQ) exactly, the last third
    run Hutchinson on what Q leaves out; the standard error is that of the last part. Hessians have
    a few large outliers that dominate Hutchinson's variance 2(‖H‖_F² − Σ H_ii²): on the default MLP
    over digits, 100 products give a standard error 9x smaller than Hutchinson's (0.30 against 2.8
    on a trace of 64; scripts/bench_curvature.py). Memory: 2·probes/3 vectors of `dim`. Below 6
    probes, Hutch++ cannot split them and plain Hutchinson is used.

    `sketch` (a `KrylovSketch` that an eigensolver filled with the vectors it multiplied, not empty):
    its span takes the place of Hutch++'s sketch and exact part at no product, and all `probes`
    products run Hutchinson on what it leaves out (`method` is then not used)."""
    if method not in TRACE_METHODS:
        raise ValueError(f"method={method!r}: one of {TRACE_METHODS}")
    if probes < 2:
        raise ValueError(f"probes={probes}: at least 2 (the standard error needs two)")
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = _default_generator(generator)
    if sketch is not None and sketch.count:
        q, top = sketch.basis()
        return _trace_beyond(hvp, q.to(device), top, probes, generator)
    if method == "hutchinson" or probes < 6:  # Hutch++ needs 2 sketch + 2 exact + 2 Hutchinson products
        samples = _quadratic_forms(hvp, _rademacher(probes, dim, generator, device))
        return float(samples.mean()), float(samples.std() / math.sqrt(probes))
    width = min(probes // 3, dim)
    q = torch.linalg.qr(hvp(_rademacher(width, dim, generator, device)).double().T)[0].to(torch.float32)
    top = float(_quadratic_forms(hvp, q.T.contiguous()).sum())
    return _trace_beyond(hvp, q.T.contiguous(), top, probes - 2 * width, generator)


def _trace_beyond(hvp: HVP, q: torch.Tensor, top: float, probes: int, generator: torch.Generator
                  ) -> Tuple[float, float]:
    """`top` (tr QᵀHQ over the orthonormal rows `q`) plus Hutchinson's estimate, from `probes`
    Rademacher probes projected off the rows, of the trace of H on the rest; and its standard error."""
    g = _rademacher(probes, q.shape[1], generator, q.device)
    g = g - (g @ q.T) @ q
    samples = _quadratic_forms(hvp, g)
    return top + float(samples.mean()), float(samples.std() / math.sqrt(probes))


def eigenpairs_and_trace(hvp: HVP, dim: int, k: int = 1, probes: int = 100, tol: float = 1e-3,
                         generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None
                         ) -> Tuple[np.ndarray, torch.Tensor, float, float]:
    """The k largest eigenpairs (`top_eigenpairs`) and the trace with its standard error, exact over
    the vectors the Lanczos multiplied and Hutchinson with `probes` products beyond them
    (`KrylovSketch`): (values, (k, dim) vectors, trace, trace_se)."""
    sketch = KrylovSketch(dim)
    values, vectors = top_eigenpairs(hvp, dim, k=k, which="LA", tol=tol, generator=generator, device=device,
                                     sketch=sketch)
    trace, trace_se = hutchinson_trace(hvp, dim, probes=probes, generator=generator, device=device, sketch=sketch)
    return values, vectors, trace, trace_se


def sharpness(source: GradientSource, k: int = 1, probes: int = 100, tol: float = 1e-3,
              generator: Optional[torch.Generator] = None) -> Dict[str, float]:
    """Sharpness of the full training loss at the current weights: `top_eigenvalue` (Lanczos, relative
    tolerance `tol`), `eigenvalue_<i>` for i < k (descending, eigenvalue_0 = top_eigenvalue),
    `trace` and `trace_se` (`hutchinson_trace`: exact over the Lanczos vectors, Hutchinson with
    `probes` products on the rest)."""
    generator = _default_generator(generator)
    device = source.params[0].device
    values, _, trace, trace_se = eigenpairs_and_trace(loss_hvp(source), source.dim, k=k, probes=probes, tol=tol,
                                                      generator=generator, device=device)
    result = {"top_eigenvalue": float(values[0]), "trace": trace, "trace_se": trace_se}
    result.update({f"eigenvalue_{i}": float(v) for i, v in enumerate(values)})
    return result
