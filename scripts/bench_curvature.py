"""Sharpness of the full training loss: sgdexp.curvature against PyHessian, and its HVP against curvlinops'.

    python scripts/bench_curvature.py [--quick] [overrides ...]

Default: the default MLP (d = 26,122) over the full digits training set (N = 1437, one chunk), after
`--pretrain` full-batch GD steps (lr 0.1) so that the spectrum is a trained network's, not init's.
Rows (best of `--repeats` wall-clock seconds, and the number of Hessian-vector products):
  * top eigenvalue to 1e-3 relative: `top_eigenpairs` (torch.func HVP + scipy eigsh, tol=1e-3)
    against PyHessian's power iteration (`hessian(...).eigenvalues(maxIter=1000, tol=1e-3)`, its
    graph of the gradient built once and reused, construction included) and against curvlinops'
    `HessianLinearOperator(...).to_scipy()` + the same eigsh; each row states its error against a
    reference (our Lanczos at tol=1e-7).
  * Hutchinson trace at 100 Rademacher probes: `hutchinson_trace` (the 100 probes as one vmap'd
    batch) against PyHessian's `trace(maxIter=100, tol=0)` (100 sequential HVPs) and against
    curvlinops' matmat on the same (d, 100) probe matrix.
  * both together (what `sharpness` does): ours against PyHessian, target <= 0.5x.
Timings share the machine with whatever else runs: say so where they are quoted.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import eigsh

from sgdexp.config import compose_config
from sgdexp.curvature import hutchinson_trace, loss_hvp, top_eigenpairs
from sgdexp.tasks.setup import build_setup


class Counted:
    """An HVP operator that counts its products (vectors, not calls)."""

    def __init__(self, hvp):
        self.hvp, self.count = hvp, 0

    def __call__(self, v):
        self.count += 1 if v.dim() == 1 else len(v)
        return self.hvp(v)


def best_of(fn, repeats: int):
    """(min seconds, last result) over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrain", type=int, default=200)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="one repeat, 50 pretraining steps")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    repeats, pretrain = (1, 50) if args.quick else (args.repeats, args.pretrain)
    torch.set_num_threads(torch.get_num_threads())

    setup = build_setup(compose_config(["device=cpu", "logger=none", *args.overrides]))
    src, model = setup.source, setup.model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(pretrain):
        src.backward_full()
        opt.step()
    model.eval()
    x, y, dim = src.data.x_train, src.data.y_train, src.dim
    print(f"model: {type(model).__name__} d={dim}, N={src.n_train}, chunk_size={src.chunk_size}, "
          f"{pretrain} GD steps, torch threads={torch.get_num_threads()}")

    hvp = loss_hvp(src)
    reference = float(top_eigenpairs(hvp, dim, k=1, tol=1e-7)[0][0])
    v0 = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    rows = []

    # ---------------------------------------------------------------- top eigenvalue
    counted = Counted(hvp)
    t_ours_eig, (values, _) = best_of(lambda: top_eigenpairs(counted, dim, k=1, tol=1e-3), repeats)
    rows.append(("top eigenvalue", "sgdexp: torch.func HVP + eigsh", t_ours_eig, counted.count // repeats,
                 abs(values[0] - reference) / reference))

    from curvlinops import HessianLinearOperator

    def curvlinops_op():
        params = [p for p in model.parameters() if p.requires_grad]
        return HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False)

    def curvlinops_eig():
        op = curvlinops_op().to_scipy()
        return eigsh(op, k=1, which="LA", tol=1e-3, v0=v0)[0]

    t_cl_eig, cl_values = best_of(curvlinops_eig, repeats)
    rows.append(("top eigenvalue", "curvlinops HessianLinearOperator + eigsh", t_cl_eig, None,
                 abs(cl_values[0] - reference) / reference))

    from pyhessian import hessian as pyhessian

    def pyhessian_eig():
        torch.manual_seed(0)
        h = pyhessian(model, F.cross_entropy, data=(x, y), cuda=False)
        return h.eigenvalues(maxIter=1000, tol=1e-3)[0][0]

    t_ph_eig, ph_value = best_of(pyhessian_eig, repeats)
    rows.append(("top eigenvalue", "PyHessian power iteration", t_ph_eig, None, abs(ph_value - reference) / reference))

    # ---------------------------------------------------------------- trace
    counted = Counted(hvp)
    t_ours_tr, (trace, se) = best_of(lambda: hutchinson_trace(counted, dim, probes=args.probes), repeats)
    rows.append((f"trace, {args.probes} probes", "sgdexp: batched torch.func HVP", t_ours_tr,
                 counted.count // repeats, f"{trace:.3f} ± {se:.3f}"))

    z = torch.randint(0, 2, (dim, args.probes), generator=torch.Generator().manual_seed(0)).float() * 2 - 1

    def curvlinops_trace():
        return float((z * (curvlinops_op() @ z)).sum() / args.probes)

    t_cl_tr, cl_trace = best_of(curvlinops_trace, repeats)
    rows.append((f"trace, {args.probes} probes", "curvlinops matmat (d, probes)", t_cl_tr, None, f"{cl_trace:.3f}"))

    def pyhessian_trace():
        torch.manual_seed(0)
        return float(np.mean(pyhessian(model, F.cross_entropy, data=(x, y), cuda=False).trace(maxIter=args.probes, tol=0.0)))

    t_ph_tr, ph_trace = best_of(pyhessian_trace, repeats)
    rows.append((f"trace, {args.probes} probes", "PyHessian Hutchinson", t_ph_tr, args.probes, f"{ph_trace:.3f}"))

    print(f"reference top eigenvalue (Lanczos, tol=1e-7): {reference:.6f}")
    print(f"{'quantity':<20} {'method':<42} {'seconds':>8} {'HVPs':>6}  error / value")
    for quantity, method, seconds, hvps, err in rows:
        err = f"{err:.1e} rel" if isinstance(err, float) else err
        print(f"{quantity:<20} {method:<42} {seconds:8.3f} {'' if hvps is None else hvps:>6}  {err}")
    ours, theirs = t_ours_eig + t_ours_tr, t_ph_eig + t_ph_tr
    print(f"top eigenvalue + trace: sgdexp {ours:.3f} s, PyHessian {theirs:.3f} s: ratio {ours / theirs:.2f}x "
          f"(target <= 0.5x); HVP choice: torch.func+eigsh {t_ours_eig:.3f} s vs curvlinops+eigsh {t_cl_eig:.3f} s, "
          f"trace {t_ours_tr:.3f} s vs {t_cl_tr:.3f} s")


if __name__ == "__main__":
    main()
