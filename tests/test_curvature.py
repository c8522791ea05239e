"""Curvature: the HVP, Lanczos and Hutchinson against the explicit Hessian (torch.func.hessian)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

from conftest import make_cfg
from sgdexp.curvature import (GRAPH_BUDGET, KrylovSketch, check_second_order, eigenpairs_and_trace, graph_budget_bytes,
                              hutchinson_trace, loss_hvp, sharpness, top_eigenpairs, with_graph_bytes)
from sgdexp.data import Dataset
from sgdexp.gradients import GradientSource
from sgdexp.tasks.setup import build_setup


def _source(batchnorm: bool = False, n: int = 60, chunk_size: int = 1000) -> GradientSource:
    """A small classifier (d = 75) on random data, moved away from init by a few GD steps so that
    the Hessian is not dominated by one direction. One chunk by default (the gradient graph is
    reused: fast tests); `chunk_size` < N exercises the chunked path."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 5, generator=gen), torch.randint(0, 3, (n,), generator=gen)
    data = Dataset("toy", x, y, x[:10], y[:10], num_outputs=3, task="classification")
    torch.manual_seed(2)
    layers = [nn.Linear(5, 8)] + ([nn.BatchNorm1d(8)] if batchnorm else []) + [nn.Tanh(), nn.Linear(8, 3)]
    model = nn.Sequential(*layers)
    src = GradientSource(model, data, chunk_size=chunk_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        src.backward_full()
        opt.step()
    return src


def _explicit_hessian(src: GradientSource, indices=None) -> torch.Tensor:
    """The (dim, dim) Hessian of L (of the mean loss over `indices` when given) in eval mode, in
    float64, by torch.func.hessian over a flat vector."""
    model = copy.deepcopy(src.model).double().eval()
    names = list(src.named_params)
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.detach().reshape(-1) for p in src.params]).double()
    x, y = src.data.x_train.double(), src.data.y_train
    if indices is not None:
        x, y = x[indices], y[indices]

    def loss(theta):
        params = {k: part.view(p.shape) for k, part, p in zip(names, theta.split(src.numels), src.params)}
        return src.loss_fn(functional_call(model, (params, buffers), (x,)), y)

    return hessian(loss)(flat)


@pytest.fixture(scope="module")
def toy():
    src = _source()
    return src, _explicit_hessian(src)


def test_hvp_equals_explicit_hessian_times_vectors(toy):
    _, H = toy
    src = _source(chunk_size=16)  # the same model and data in 4 chunks
    v = torch.randn(4, src.dim, generator=torch.Generator().manual_seed(3))
    hv = loss_hvp(src)(v)
    expected = (H @ v.double().T).T
    assert hv.shape == v.shape and hv.dtype == v.dtype
    assert torch.allclose(hv.double(), expected, rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    # single vector: same as the batch row
    assert torch.allclose(loss_hvp(src)(v[1]), hv[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk_size", [1000, 8])
def test_hvp_on_a_subset_is_the_subset_loss_hessian(chunk_size):
    """`indices`: the Hessian of the subset's mean loss (one chunk and several), not the full one's."""
    src = _source(chunk_size=chunk_size)
    subset = torch.randperm(src.n_train, generator=torch.Generator().manual_seed(4))[:20]
    H_sub, H = _explicit_hessian(src, subset), _explicit_hessian(src)
    v = torch.randn(3, src.dim, generator=torch.Generator().manual_seed(5))
    hv = loss_hvp(src, indices=subset)(v).double()
    assert torch.allclose(hv, (H_sub @ v.double().T).T, rtol=1e-4, atol=1e-5 * float(H_sub.abs().max()))
    assert not torch.allclose(hv, (H @ v.double().T).T, rtol=1e-2)


@pytest.mark.parametrize("chunk_size", [1000, 16])
def test_hvp_cached_graphs_follow_the_weights(chunk_size):
    """The gradient graphs (of one chunk, and of 4 within the default budget) are reused between
    calls, and rebuilt after the weights move."""
    src = _source(chunk_size=chunk_size)
    hvp = loss_hvp(src)
    v = torch.randn(3, src.dim, generator=torch.Generator().manual_seed(6))
    H = _explicit_hessian(src)
    first = hvp(v)
    assert torch.allclose(first.double(), (H @ v.double().T).T, rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    assert torch.equal(hvp(v), first)  # reused graph, same numbers
    assert torch.allclose(loss_hvp(src, block=3)(v), first, rtol=1e-5, atol=1e-6)  # batched = looped
    src.params[0].data.mul_(1.5)  # through .data: no version bump, still seen
    H2 = _explicit_hessian(src)
    moved = hvp(v)
    assert not torch.allclose(moved, first)
    assert torch.allclose(moved.double(), (H2 @ v.double().T).T, rtol=1e-4, atol=1e-5 * float(H2.abs().max()))


def _forwards_per_product(src: GradientSource, **kwargs) -> int:
    """Forward passes of the model in a product after the operator's first (the chunks whose
    gradient graph `loss_hvp` did not keep), checking that the product is the same."""
    hvp = loss_hvp(src, **kwargs)
    v = torch.randn(2, src.dim, generator=torch.Generator().manual_seed(8))
    first = hvp(v)
    calls = []
    handle = src.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        again = hvp(v)
    finally:
        handle.remove()
    assert torch.equal(again, first)
    return len(calls)


def test_with_graph_bytes_counts_what_the_graph_saves():
    """exp saves its output (1000 float32: 4000 bytes); a product of a tensor with itself saves that
    tensor, which is not counted when shared, and is counted once when not."""
    a = torch.randn(1000, requires_grad=True)
    out, held = with_graph_bytes(lambda: a.exp().sum())
    assert held == 4000 and torch.allclose(out, a.detach().exp().sum())
    assert with_graph_bytes(lambda: (a * a).sum(), (a,))[1] == 0
    assert with_graph_bytes(lambda: (a * a).sum())[1] == 4000
    assert with_graph_bytes(lambda: (a.detach() * 2).sum())[1] == 0  # no graph


def test_graph_budget_is_a_quarter_of_a_cuda_devices_free_memory(monkeypatch):
    """On CUDA the kept graphs may take a quarter of the device's free memory when the operator is
    made (mem_get_info stands in for a device here); in main memory, the fixed budget."""
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (8 << 30, 16 << 30))
    assert graph_budget_bytes(torch.device("cuda", 1)) == 2 << 30 and asked == [torch.device("cuda", 1)]
    assert graph_budget_bytes(torch.device("cpu")) == GRAPH_BUDGET == 1 << 30
    assert graph_budget_bytes(torch.device("cuda", 1), 5 << 20) == 5 << 20  # trainer.hvp_graph_mib, where set


def test_hvp_keeps_chunk_graphs_within_the_budget():
    """Several chunks keep their graphs while the tensors they hold fit `graph_budget` bytes, the
    first chunks first; the others are built again at each product. One chunk in all is kept
    whatever the budget (a product needs its graph whole anyway)."""
    src = _source(chunk_size=16)  # 60 samples: 4 chunks
    assert _forwards_per_product(src, graph_budget=0) == 4
    assert _forwards_per_product(src) == 0  # the default budget holds this toy many times over
    rebuilt = [_forwards_per_product(src, graph_budget=2 ** k) for k in range(6, 20)]
    assert rebuilt == sorted(rebuilt, reverse=True) and rebuilt[0] == 4 and rebuilt[-1] == 0
    assert any(0 < r < 4 for r in rebuilt)  # a prefix of the chunks kept, the rest rebuilt
    v = torch.randn(3, src.dim, generator=torch.Generator().manual_seed(9))
    kept, rebuilt_each_time = loss_hvp(src)(v), loss_hvp(src, graph_budget=0)(v)
    # the same numbers (so the budget may change when a run resumes: sgdexp.rundir.RESUMABLE_KEYS)
    assert torch.equal(kept, rebuilt_each_time)
    assert _forwards_per_product(_source(), graph_budget=0) == 0


def test_graph_budget_from_the_config():
    """`trainer.hvp_graph_mib` reaches the gradient source, whose budget `loss_hvp` takes when it is
    given none (null: the device's default)."""
    assert build_setup(make_cfg(["trainer.hvp_graph_mib=3"])).source.graph_budget == 3 << 20
    assert build_setup(make_cfg()).source.graph_budget is None
    src = _source(chunk_size=16)  # 4 chunks
    src.graph_budget = 0
    assert _forwards_per_product(src) == 4
    src.graph_budget = 1 << 20
    assert _forwards_per_product(src) == 0


class _BatchNormTanh(nn.BatchNorm1d):
    """A BatchNorm subclass that does more in forward (like timm's BatchNormAct2d)."""

    def forward(self, x):
        return torch.tanh(super().forward(x))


def test_hvp_through_batchnorm_is_the_eval_mode_hessian():
    """Products differentiate eval-mode BatchNorm as the affine map it is (`second_order_mode`): the
    Hessian of the eval-mode loss (native batch_norm twice differentiated, float64) on a conv net
    with BatchNorm2d, BatchNorm1d without affine parameters and a subclass that is left alone; the
    hooks are gone and the model's mode is back afterwards."""
    gen = torch.Generator().manual_seed(11)
    x, y = torch.randn(40, 2, 4, 4, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    data = Dataset("toy", x, y, x[:8], y[:8], num_outputs=3, task="classification")
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
                          nn.Linear(48, 6), nn.BatchNorm1d(6, affine=False), nn.Linear(6, 5),
                          _BatchNormTanh(5), nn.Linear(5, 3))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.normal_(generator=gen)
    src = GradientSource(model.train(), data, chunk_size=1000)
    H = _explicit_hessian(src)
    v = torch.randn(3, src.dim, generator=gen)
    hv = loss_hvp(src)(v).double()
    assert torch.allclose(hv, (H @ v.double().T).T, rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    assert model.training and not any(m._forward_hooks for m in model.modules())
    with src.second_order_mode():
        assert not model.training
        hooked = [type(m) for m in model.modules() if m._forward_hooks]
    assert hooked == [nn.BatchNorm2d, nn.BatchNorm1d]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_evaluate_is_kept_while_the_weights_stay(batchnorm):
    """The run's evaluation and the generalization analysis ask at the same steps: the second asks
    without a pass over the data, and any change of a parameter or buffer is seen."""
    src = _source(batchnorm=batchnorm)
    calls = []
    src.model.register_forward_hook(lambda *_: calls.append(1))
    first = src.evaluate("train")
    assert len(calls) == 1 and src.evaluate("train") == first and len(calls) == 1
    src.evaluate("test")
    assert len(calls) == 2
    changed = src.params[0] if not batchnorm else next(src.model.buffers())
    changed.data.mul_(1.5)  # through .data: no version bump, still seen
    moved = src.evaluate("train")
    assert len(calls) == 3 and moved["train/loss"] != first["train/loss"]
    src.evaluate("test")
    assert len(calls) == 4


def test_top_eigenvalue_not_mistaken_for_a_close_second():
    """λ2 = 0.96 λ1: asked for the top pair alone, Lanczos at tol 1e-2 returned λ2 from 4 of these 200
    starts; with its buffer pair, every start finds λ1 (and λ2 for k = 2) within the tolerance."""
    d, gen = 300, torch.Generator().manual_seed(0)
    spectrum = torch.cat([torch.tensor([1.0, 0.96], dtype=torch.float64), torch.rand(d - 2, generator=gen, dtype=torch.float64) * 0.9])
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    matrix = (q * spectrum) @ q.T
    hvp = lambda v: (v.double() @ matrix).to(v.dtype)  # noqa: E731 (symmetric)
    for seed in range(200):
        for k in (1, 2):
            values, _ = top_eigenpairs(hvp, d, k=k, tol=1e-2, generator=torch.Generator().manual_seed(seed))
            assert np.allclose(values, spectrum[:k].numpy(), rtol=1e-2), (seed, k, values)


def test_top_eigenpairs_match_explicit_spectrum(toy):
    src, H = toy
    exact = np.linalg.eigvalsh(H.numpy())
    values, vectors = top_eigenpairs(loss_hvp(src), src.dim, k=3)
    assert abs(values[0] - exact[-1]) / abs(exact[-1]) <= 1e-4
    assert np.allclose(values, exact[::-1][:3], rtol=1e-3)
    assert list(values) == sorted(values, reverse=True)
    assert vectors.shape == (3, src.dim)
    residual = (H.float() @ vectors[0]) - values[0] * vectors[0]
    assert float(residual.norm()) <= 1e-2 * abs(values[0])

    low, low_vectors = top_eigenpairs(loss_hvp(src), src.dim, k=1, which="SA")
    assert low[0] == pytest.approx(exact[0], abs=1e-4 * abs(exact[-1]))
    assert low_vectors.shape == (1, src.dim)


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_trace_within_five_percent_and_three_se(toy, method):
    src, H = toy
    exact = float(torch.trace(H))
    trace, se = hutchinson_trace(loss_hvp(src), src.dim, method=method)
    assert abs(trace - exact) <= 0.05 * abs(exact)
    assert abs(trace - exact) <= 3 * se
    assert se > 0


def test_quadratic_with_known_spectrum():
    """A rotated quadratic with a chosen spectrum (in float64 end to end); trace known exactly."""
    dim = 50
    spectrum = torch.linspace(0.1, 5.0, dim).double()
    spectrum[-1], spectrum[0] = 10.0, -2.0
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(4)).double())
    matrix = (q * spectrum) @ q.T

    def hvp(v):
        return (v.double() @ matrix).to(v.dtype)

    values, vectors = top_eigenpairs(hvp, dim, k=2, tol=1e-8)
    assert np.allclose(values, [10.0, float(spectrum[-2])], rtol=1e-6)
    assert abs(float(vectors[0].double() @ q[:, -1])) == pytest.approx(1.0, abs=1e-5)
    low, _ = top_eigenpairs(hvp, dim, k=1, which="SA", tol=1e-8)
    assert low[0] == pytest.approx(-2.0, rel=1e-5)
    # Rademacher Hutchinson variance is 2 Σ_{i≠j} H_ij²: its SE must describe the actual error
    trace, se = hutchinson_trace(hvp, dim, probes=400, generator=torch.Generator().manual_seed(5), method="hutchinson")
    true_se = float(2 * (matrix.square().sum() - matrix.diagonal().square().sum()) / 400) ** 0.5
    assert abs(trace - float(spectrum.sum())) <= 3 * true_se
    assert se == pytest.approx(true_se, rel=0.25)


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    """d = 400, eigenvalues 100/i (a few outliers carry ‖H‖_F): at 60 products, Hutch++'s error is
    within 3 of its SEs, and its SE is about √((‖H − H_20‖_F²/20) / (‖H‖_F²/60)) ≈ 0.30 of
    Hutchinson's (asserted ≤ 0.4); with probes/3 ≥ rank, exact."""
    dim = 400
    spectrum = 100.0 / torch.arange(1, dim + 1).double()
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(8)).double())
    matrix = (q * spectrum) @ q.T

    def hvp(v):
        return (v.double() @ matrix).to(v.dtype)

    exact = float(spectrum.sum())
    pp, pp_se = hutchinson_trace(hvp, dim, probes=60, generator=torch.Generator().manual_seed(9))
    _, h_se = hutchinson_trace(hvp, dim, probes=60, generator=torch.Generator().manual_seed(9), method="hutchinson")
    assert abs(pp - exact) <= 3 * pp_se and pp_se <= 0.4 * h_se
    low_rank = (q[:, :5] * spectrum[:5]) @ q[:, :5].T
    trace, se = hutchinson_trace(lambda v: (v.double() @ low_rank).to(v.dtype), dim, probes=18)
    assert trace == pytest.approx(float(spectrum[:5].sum()), rel=1e-5) and se < 1e-4


def _rotated(spectrum: torch.Tensor, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(len(spectrum), len(spectrum), generator=torch.Generator().manual_seed(seed)).double())
    return (q * spectrum) @ q.T


def _sketched_trace(matrix: torch.Tensor, k: int, probes: int, seed: int):
    """Lanczos to the top k eigenpairs keeping its vectors, then the trace from them and `probes`
    probes; returns (trace, se, products of the trace beyond Lanczos's)."""
    def hvp(v):
        hvp.count += 1 if v.dim() == 1 else len(v)
        return (v.double() @ matrix).to(v.dtype)

    hvp.count = 0
    sketch = KrylovSketch(len(matrix))
    gen = torch.Generator().manual_seed(seed)
    top_eigenpairs(hvp, len(matrix), k=k, tol=0.01, generator=gen, sketch=sketch)
    lanczos = hvp.count
    trace, se = hutchinson_trace(hvp, len(matrix), probes=probes, generator=gen, sketch=sketch)
    return trace, se, hvp.count - lanczos


def test_krylov_sketch_basis_is_orthonormal_with_the_exact_trace_over_it():
    matrix = _rotated(100.0 / torch.arange(1, 201).double(), seed=3)
    sketch = KrylovSketch(200)
    top_eigenpairs(lambda v: (v.double() @ matrix).to(v.dtype), 200, k=2, tol=0.01, sketch=sketch)
    q, trace = sketch.basis()
    assert 6 <= q.shape[0] == len(sketch.vectors) <= sketch.max_vectors
    assert torch.allclose(q.double() @ q.double().T, torch.eye(q.shape[0], dtype=torch.float64), atol=1e-5)
    assert trace == pytest.approx(float(torch.trace(q.double() @ matrix @ q.double().T)), rel=1e-5)
    # a sketch keeps at least as many vectors as Lanczos's basis (ncv = 4(k + 1) + 2 = 14 here, with
    # the buffer pair), and a full one keeps its first vectors and ignores the rest
    small = KrylovSketch(200, max_vectors=3)
    top_eigenpairs(lambda v: (v.double() @ matrix).to(v.dtype), 200, k=2, tol=0.01, sketch=small)
    assert small.max_vectors == 14 and len(small.vectors) == 14 < len(sketch.vectors)
    assert all(torch.equal(a, b) for a, b in zip(small.vectors, sketch.vectors))
    full = KrylovSketch(200, max_vectors=3)
    for x in sketch.vectors:
        full.add(x, x @ matrix)
    first = sketch.vectors[:3].double()
    assert len(full.vectors) == 3
    assert torch.allclose(full.forms, first @ matrix @ first.T, rtol=1e-5, atol=1e-5)


def test_krylov_aware_trace_is_exact_on_a_low_rank_hessian():
    """Rank 5 in d = 400: the Lanczos space (v0 and H's range) holds all of H, nothing is left."""
    spectrum = torch.zeros(400, dtype=torch.float64)
    spectrum[:5] = torch.tensor([9.0, 5.0, 3.0, 2.0, 1.0])
    trace, se, _ = _sketched_trace(_rotated(spectrum, seed=8), k=2, probes=4, seed=0)
    assert trace == pytest.approx(20.0, rel=1e-5) and se < 1e-4


def test_krylov_aware_trace_unbiased_and_better_than_hutch_plus_plus_at_fewer_products():
    """d = 400, eigenvalues 100/i. Over 40 seeds: the mean of Lanczos (k = 2) + 4 probes is within 3
    standard errors of the mean (from the spread) of the trace, its SEs describe its errors (RMS
    error / RMS SE within a factor 2 of 1; with 4 probes an SE has 3 degrees of freedom), and its
    RMS error is below that of Hutch++ with 12 probes after the same Lanczos, which uses 8 more
    products."""
    matrix = _rotated(100.0 / torch.arange(1, 401).double(), seed=8)
    exact = float(torch.trace(matrix))
    runs = [_sketched_trace(matrix, k=2, probes=4, seed=s) for s in range(40)]
    est, se = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
    assert abs(est.mean() - exact) <= 3 * est.std(ddof=1) / np.sqrt(len(est))
    rms_error = np.sqrt(np.mean((est - exact) ** 2))
    assert 0.5 <= rms_error / np.sqrt(np.mean(se ** 2)) <= 2.0
    hvp = lambda v: (v.double() @ matrix).to(v.dtype)  # noqa: E731
    plus = np.array([hutchinson_trace(hvp, 400, probes=12, generator=torch.Generator().manual_seed(100 + s))[0]
                     for s in range(40)])
    assert rms_error < np.sqrt(np.mean((plus - exact) ** 2))
    assert all(r[2] == 4 for r in runs)  # no product beyond the probes: the sketch is Lanczos's
    values, vectors, trace, se = eigenpairs_and_trace(hvp, 400, k=2, probes=4, tol=0.01,
                                                      generator=torch.Generator().manual_seed(0))
    assert (trace, se) == runs[0][:2] and values[0] == pytest.approx(100.0, rel=1e-3) and vectors.shape == (2, 400)


def test_seeded_and_validated():
    dim, hvp = 20, (lambda v: v * torch.arange(1.0, 21.0))
    for method in ("hutch++", "hutchinson"):
        a = hutchinson_trace(hvp, dim, probes=10, generator=torch.Generator().manual_seed(7), method=method)
        b = hutchinson_trace(hvp, dim, probes=10, generator=torch.Generator().manual_seed(7), method=method)
        assert a == b
    a = hutchinson_trace(hvp, dim, probes=10, method="hutchinson")
    assert a[0] == pytest.approx(210.0)  # a diagonal operator: every Rademacher probe gives the trace
    with pytest.raises(ValueError):
        hutchinson_trace(hvp, dim, method="hutch")
    with pytest.raises(ValueError):
        hutchinson_trace(hvp, dim, probes=1)
    assert hutchinson_trace(hvp, dim, probes=4) == hutchinson_trace(hvp, dim, probes=4, method="hutchinson")
    with pytest.raises(ValueError):
        top_eigenpairs(hvp, dim, which="LM")
    with pytest.raises(ValueError):
        top_eigenpairs(hvp, dim, k=dim)


def test_sharpness_leaves_grad_mode_and_batchnorm_buffers_unchanged():
    src = _source(batchnorm=True)
    model = src.model
    model.train()
    src.backward_full()  # a .grad to keep
    grads = [p.grad.clone() for p in src.params]
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    weights = [p.detach().clone() for p in src.params]

    result = sharpness(src, k=2, probes=20)

    assert model.training
    assert all(torch.equal(p.grad, g) for p, g in zip(src.params, grads))
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())
    assert all(torch.equal(p, w) for p, w in zip(src.params, weights))
    assert set(result) == {"top_eigenvalue", "trace", "trace_se", "eigenvalue_0", "eigenvalue_1"}
    # the eval-mode Hessian (running statistics), as documented
    exact = np.linalg.eigvalsh(_explicit_hessian(src).numpy())
    assert result["top_eigenvalue"] == pytest.approx(exact[-1], rel=1e-3)
    assert result["eigenvalue_1"] == pytest.approx(exact[-2], rel=1e-3)


@pytest.mark.parametrize("batchnorm,chunk_size,task", [(False, 1000, "classification"), (True, 16, "classification"),
                                                        (False, 16, "regression")])
def test_noise_covariance_times_equals_the_per_sample_gradients_covariance(batchnorm, chunk_size, task):
    """C V from Jacobian products against C formed from per-sample gradients (float64, centred),
    on all samples and on a subset, in one chunk and in several, with BatchNorm in eval mode."""
    src = _source(batchnorm=batchnorm, chunk_size=chunk_size)
    if task == "regression":
        gen = torch.Generator().manual_seed(3)
        x = src.data.x_train
        src = GradientSource(nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2)),
                             Dataset("toy", x, torch.randn(len(x), 2, generator=gen), x[:10], torch.zeros(10, 2),
                                     num_outputs=2, task="regression"), chunk_size=chunk_size)
    v = torch.randn(src.dim, 3, generator=torch.Generator().manual_seed(4))
    src.backward_full()
    grads = [p.grad.clone() for p in src.params]
    buffers = [b.clone() for b in src.model.buffers()]
    for indices in (None, torch.tensor([3, 17, 5, 40, 22, 9, 31, 58, 0, 44, 12, 27, 36, 50, 8, 19, 2, 33, 47, 25])):
        g = torch.cat(list(src.per_sample_grads(indices))).double()
        g = g - g.mean(dim=0)
        expected = g.T @ (g @ v.double()) / len(g)
        got = src.noise_covariance_times(v, indices)
        assert got.dtype == torch.float64 and got.shape == (src.dim, 3)
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    assert src.model.training and all(torch.equal(a, b) for a, b in zip(buffers, src.model.buffers()))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, src.params))


class _GatedAttention(nn.Module):
    """A token mixer with the two operations whose native backward torch cannot differentiate: fused
    scaled dot-product attention (every timm ViT) and a hardsigmoid gate (MobileNetV3, LCNet), as a
    module and as a function; `composed=True` computes the same function from twice-differentiable
    parts, for the reference Hessian."""

    def __init__(self, tokens: int = 3, width: int = 4, composed: bool = False):
        super().__init__()
        self.tokens, self.width, self.composed = tokens, width, composed
        self.qkv, self.gate = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.hardsigmoid = nn.Hardsigmoid()
        self.out = nn.Linear(tokens * width, 3)

    def forward(self, x):
        h = x.view(len(x), self.tokens, self.width)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        if self.composed:
            mixed = torch.softmax(q @ k.transpose(-1, -2) / self.width ** 0.5, dim=-1) @ v
            gates = F.relu6(self.gate(h) + 3) / 6, F.relu6(mixed + 3) / 6
        else:
            mixed = F.scaled_dot_product_attention(q, k, v)
            gates = self.hardsigmoid(self.gate(h)), F.hardsigmoid(mixed)
        return self.out((mixed * gates[0] * gates[1]).flatten(1))


def test_hvp_through_fused_attention_and_hardsigmoid_is_the_composed_functions_hessian():
    """`second_order_mode` runs attention by its math kernel and hardsigmoid as relu6(x + 3) / 6:
    products through a model built of the native operations (whose double backward torch lacks, as
    checked here) equal the explicit Hessian of the same function composed of differentiable parts."""
    gen = torch.Generator().manual_seed(13)
    x, y = torch.randn(30, 12, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    data = Dataset("toy", x, y, x[:8], y[:8], num_outputs=3, task="classification")
    torch.manual_seed(14)
    model = _GatedAttention()
    composed = copy.deepcopy(model)
    composed.composed = True
    src = GradientSource(model, data, chunk_size=1000)
    grads = torch.autograd.grad(src.loss_fn(model(x), y), src.params, create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(grads[0].sum(), src.params)  # the native operations, outside the mode
    H = _explicit_hessian(GradientSource(composed, data, chunk_size=1000))
    v = torch.randn(3, src.dim, generator=gen)
    expected = (H @ v.double().T).T
    for block in (1, 3):  # a vector per backward pass (CPUs), and batched ones (`is_grads_batched`: accelerators)
        hv = loss_hvp(src, block=block)(v).double()
        assert torch.allclose(hv, expected, rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    check_second_order(src, "model", "gated", "analysis=[curvature]")  # passes: nothing else is missing


class _AtenHardsigmoid(nn.Module):
    """Calls the aten operation itself, as exported or custom code may: nothing replaces it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.ops.aten.hardsigmoid(self.a(x)))


def test_a_model_torch_cannot_differentiate_twice_stops_the_run_before_training():
    """An analysis or task that takes the Hessian stops at setup with one line naming the model's key,
    what needs the second derivative and torch's reason, not at its first measurement; one that
    does not (diffusion) never asks."""
    from sgdexp.analysis import build_analyses
    from sgdexp.errors import ConfigError
    from sgdexp.tasks.escape import check_sharpness

    src = _source()
    bad = GradientSource(_AtenHardsigmoid(), src.data, chunk_size=1000)
    cfg = make_cfg(["analysis=[diffusion,curvature]"])
    with pytest.raises(ConfigError) as err:
        build_analyses(cfg, bad)
    message = str(err.value)
    assert "\n" not in message and message.startswith("model='mlp' is not allowed: a model whose loss torch can "
                                                      "differentiate twice, which analysis=[curvature] needs")
    assert message.endswith("(here: derivative for aten::hardsigmoid_backward is not implemented)")
    assert len(build_analyses(make_cfg(["analysis=[diffusion]"]), bad)) == 1
    assert len(build_analyses(cfg, src)) == 2
    timm_cfg = make_cfg(["task=escape", "model=timm", "model.arch=resnet10t"])
    with pytest.raises(ConfigError, match=r"^model\.arch='resnet10t' is not allowed: .* the sharpness at the minimum "
                                          r"\(task\.sharpness_probes=\d+; 0 skips it\)"):
        check_sharpness(timm_cfg, type("Setup", (), {"source": bad})())
    timm_cfg.task.sharpness_probes = 0
    check_sharpness(timm_cfg, type("Setup", (), {"source": bad})())
