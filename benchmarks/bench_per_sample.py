"""Per-sample gradients: `torch.func` (vmap over grad, chunked) against a Python loop over samples.

    python benchmarks/bench_per_sample.py [--quick] [overrides ...]

Default: the default MLP on digits, all N = 1437 training samples. Two workloads, each done both
ways: the squared norm of every per-sample gradient (what tr C, the matched σ and the noise scale
need: gradients are reduced chunk by chunk), and the full (N, d) matrix of per-sample gradients.
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
    n = src.n_train

    rows = torch.arange(n).reshape(-1, 1)

    def vmapped_norms():
        return torch.cat([sum(torch.linalg.vector_norm(g.flatten(1), dim=1).square() for g in block.values())
                          for block in src.batch_grad_blocks(rows)])

    def loop(reduce: bool):
        src.model.eval()
        out = torch.empty(n) if reduce else torch.empty(n, src.dim)
        for i in range(n):
            src.backward_batch(torch.tensor([i]))
            out[i] = src.flat_grad().square().sum() if reduce else src.flat_grad()
        src.model.train()
        return out

    def vmapped_matrix():
        return torch.cat(list(src.per_sample_grads()))

    assert torch.allclose(vmapped_matrix(), loop(False), atol=1e-5, rtol=1e-4)
    assert torch.allclose(vmapped_norms(), loop(True), rtol=1e-4)
    print(f"model={cfg.model.name} dataset={cfg.dataset.name} N={n} d={src.dim} threads={torch.get_num_threads()}")
    for what, fast, slow in (("squared norms", vmapped_norms, lambda: loop(True)),
                             ("(N, d) matrix", vmapped_matrix, lambda: loop(False))):
        t_vmap, t_loop = best_of(fast, repeats), best_of(slow, repeats)
        print(f"{what}: python loop {1e3 * t_loop:.0f} ms ({1e6 * t_loop / n:.0f} us/sample), "
              f"torch.func {1e3 * t_vmap:.0f} ms ({1e6 * t_vmap / n:.0f} us/sample), "
              f"speed-up {t_loop / t_vmap:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
