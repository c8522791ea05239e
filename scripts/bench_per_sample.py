"""Per-sample gradients: `torch.func` (vmap over grad, chunked) against a Python loop over samples.

    python scripts/bench_per_sample.py [--quick] [overrides ...]

Default: the default MLP on digits, all N = 1437 training samples. Two workloads, each done both
ways:
  * the squared norm of every per-sample gradient (what tr C, the matched σ and the noise scale
    need): `GradientSource.batch_grad_sq_norms`, eagerly (vmap, reduced chunk by chunk) and with
    `trainer.compile=true` (vmap, grad and the reduction in one torch.compile'd kernel; its
    compile time is printed separately and not in the timing);
  * the full (N, d) matrix of per-sample gradients (`per_sample_grads`), eager and compiled,
    written into one preallocated buffer by both the loop and vmap.
The loop is one forward and backward pass per sample (`backward_batch` on a single index).
Target: vmap >= 10x faster.
"""
from __future__ import annotations

import argparse
import time

import torch

from sgdexp.config import compose_config
from sgdexp.tasks.setup import build_setup


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    cfg = compose_config(["device=cpu", "logger=none", *args.overrides])
    src = build_setup(cfg).source
    compiled_src = build_setup(compose_config(["device=cpu", "logger=none", "trainer.compile=true", *args.overrides])).source
    n = src.n_train
    rows = torch.arange(n).reshape(-1, 1)

    out = torch.empty(n, src.dim)  # the (N, d) matrix is written here both ways (page faults of a
    out.zero_()                     # fresh 150 MB buffer are then counted for neither)

    def loop(reduce: bool):
        src.model.eval()
        norms = torch.empty(n)
        for i in range(n):
            src.backward_batch(torch.tensor([i]))
            if reduce:
                norms[i] = src.flat_grad().square().sum()
            else:
                out[i] = src.flat_grad()
        src.model.train()
        return norms if reduce else out

    def matrix(source):
        start = 0
        for block in source.per_sample_grads():
            out[start : start + len(block)] = block
            start += len(block)
        return out

    t0 = time.perf_counter()
    compiled_norms = compiled_src.batch_grad_sq_norms(rows)
    compile_s = time.perf_counter() - t0
    looped_norms = loop(True).double()
    assert torch.allclose(src.batch_grad_sq_norms(rows), looped_norms, rtol=1e-4)
    assert torch.allclose(compiled_norms, looped_norms, rtol=1e-4)
    looped = loop(False).clone()
    for source in (src, compiled_src):
        assert torch.allclose(matrix(source), looped, atol=1e-5, rtol=1e-4)
    print(f"model={cfg.model.name} dataset={cfg.dataset.name} N={n} d={src.dim} threads={torch.get_num_threads()}; "
          f"first compiled call (compiling) {compile_s:.1f} s")
    for what, fast, slow in (
        ("squared norms, eager vmap", lambda: src.batch_grad_sq_norms(rows), lambda: loop(True)),
        ("squared norms, compiled vmap", lambda: compiled_src.batch_grad_sq_norms(rows), lambda: loop(True)),
        ("(N, d) matrix, eager vmap", lambda: matrix(src), lambda: loop(False)),
        ("(N, d) matrix, compiled vmap", lambda: matrix(compiled_src), lambda: loop(False)),
    ):
        t_vmap, t_loop = best_of(fast, repeats), best_of(slow, repeats)
        print(f"{what}: python loop {1e3 * t_loop:.0f} ms ({1e6 * t_loop / n:.0f} us/sample), "
              f"torch.func {1e3 * t_vmap:.1f} ms ({1e6 * t_vmap / n:.1f} us/sample), "
              f"speed-up {t_loop / t_vmap:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
