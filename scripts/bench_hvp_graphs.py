"""Hessian-vector products over a training set of several chunks: each chunk's gradient graph kept
between products (`loss_hvp` within `graph_budget_bytes`) against built again at each product.

    python scripts/bench_hvp_graphs.py [--quick] [--repeats N] [--threads T] [overrides ...]

Default: the default MLP over an MNIST-shaped set (`dataset=gaussian_mixture dataset.n_train=60000
dataset.dim=784`: 60000 samples of 784 features, 30 chunks of `trainer.chunk_size` 2048). Prints a
product's time (best of `--repeats` after the operator's first product, which builds the graphs)
with every graph built again (`graph_budget=0`) and within the budget (`trainer.hvp_graph_mib`, by
default 1 GiB on a CPU), their ratio, and the bytes the graphs hold. `--quick`: 8192 samples
(4 chunks), one thread.
"""
from __future__ import annotations

import argparse
import time

import torch

from sgdexp.config import compose_config
from sgdexp.curvature import gradient_graph, graph_budget_bytes, loss_hvp
from sgdexp.tasks.setup import build_setup


def product_seconds(hvp, v: torch.Tensor, repeats: int) -> float:
    hvp(v)  # builds (and keeps what it may of) the graphs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        hvp(v)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    n = 8192 if args.quick else 60000
    setup = build_setup(compose_config(["device=cpu", "logger=none", "dataset=gaussian_mixture",
                                        f"dataset.n_train={n}", "dataset.dim=784", *args.overrides]))
    src = setup.source
    chunks = -(-src.n_train // src.chunk_size)
    x, y = src.data.x_train[: src.chunk_size], src.data.y_train[: src.chunk_size]
    _, held = gradient_graph(src, x, y, shared=(src.data.x_train, src.data.y_train))
    budget = graph_budget_bytes(torch.device("cpu"), src.graph_budget)
    print(f"model d={src.dim}, N={src.n_train} in {chunks} chunks of {src.chunk_size}, torch threads "
          f"{torch.get_num_threads()}; one chunk's graph holds {held / 2 ** 20:.1f} MiB, all {chunks} "
          f"{chunks * held / 2 ** 20:.0f} MiB (budget {budget / 2 ** 20:.0f} MiB)")
    v = torch.randn(src.dim, generator=torch.Generator().manual_seed(0))
    rebuilt = product_seconds(loss_hvp(src, graph_budget=0), v, args.repeats)
    kept = product_seconds(loss_hvp(src), v, args.repeats)
    print(f"one product: graphs built again {rebuilt:.3f} s, kept {kept:.3f} s: {rebuilt / kept:.2f}x faster")


if __name__ == "__main__":
    main()
