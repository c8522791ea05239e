"""Per-sample gradients: `torch.func` (vmap over grad, chunked) against a Python loop over samples.

    python benchmarks/bench_per_sample.py [--quick] [overrides ...]

Default: the default MLP on digits, all N = 1437 training samples. Target: vmap >= 10x faster.
"""
from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_module

from sgdexp.config import register_configs
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
    register_configs()
    with initialize_config_module("sgdexp.conf", version_base="1.3"):
        cfg = compose("config", overrides=["device=cpu", "logger=none", *args.overrides])
    src = build_setup(cfg).source
    n = src.n_train

    def vmapped():
        return torch.cat(list(src.per_sample_grads()))

    def loop():
        src.model.eval()
        out = torch.empty(n, src.dim)
        for i in range(n):
            src.backward_batch(torch.tensor([i]))
            out[i] = src.flat_grad()
        src.model.train()
        return out

    assert torch.allclose(vmapped(), loop(), atol=1e-5, rtol=1e-4)
    t_vmap, t_loop = best_of(vmapped, repeats), best_of(loop, repeats)
    print(f"model={cfg.model.name} dataset={cfg.dataset.name} N={n} d={src.dim} threads={torch.get_num_threads()}")
    print(f"python loop : {t_loop:.3f} s  ({1e6 * t_loop / n:.0f} us/sample)")
    print(f"torch.func  : {t_vmap:.3f} s  ({1e6 * t_vmap / n:.0f} us/sample)")
    print(f"speed-up    : {t_loop / t_vmap:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
