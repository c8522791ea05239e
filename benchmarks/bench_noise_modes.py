"""Per-step wall time of every noise mode relative to plain `gd`, on the default MLP and digits.

    python benchmarks/bench_noise_modes.py [--steps 1000] [--quick]

Each mode takes the same full-batch steps (noise application and optimizer step, metrics measured
every 10th step as in training); each mode is timed right after `gd` and the median ratio over
repeats is printed.
Rows: σ fixed (the generator's cost alone), and σ matched (re-estimated every `match_every` = 250
steps from 1024 random samples in minibatches, amortised). Targets: white, Lévy and anti-correlated <= 1.1x,
streaming fGn <= 1.3x, SGD-covariance <= 3x.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sgdexp.config import compose_config
from sgdexp.tasks.setup import build_setup

MODES = ["gd", "gd_white", "gd_levy", "gd_anticorrelated", "gd_fbm", "gd_sgdcov"]
TARGET = {"gd_white": 1.1, "gd_levy": 1.1, "gd_anticorrelated": 1.1, "gd_fbm": 1.3, "gd_sgdcov": 3.0}


def time_mode(mode: str, sigma: str, steps: int) -> float:
    overrides = ["device=cpu", "logger=none", f"noise={mode}"] + ([f"noise.sigma={sigma}"] if mode != "gd" else [])
    cfg = compose_config(overrides)
    setup = build_setup(cfg)
    for step in range(1, 11):  # warm-up (first matched σ, vmap tracing)
        setup.noise.apply(step)
        setup.optimizer.step()
    t0 = time.perf_counter()
    for step in range(11, 11 + steps):
        setup.noise.apply(step, measure=step % 10 == 0)
        setup.optimizer.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 200, 2
    # Each mode is timed right after a `gd` run and divided by it: the machine's speed drifts
    # more over a whole benchmark than between two neighbouring runs. Median over repeats.
    ratios, times = {}, {}
    for _ in range(args.repeats):
        for mode in MODES[1:]:
            for sigma in ("0.01", "matched"):
                gd, t = time_mode("gd", "-", args.steps), time_mode(mode, sigma, args.steps)
                ratios.setdefault((mode, sigma), []).append(t / gd)
                times.setdefault((mode, sigma), []).append(t)
                times.setdefault(("gd", "-"), []).append(gd)
    print(f"default MLP on digits (N=1437, d=26122), {args.steps} steps, threads={torch.get_num_threads()}, "
          f"median of {args.repeats} paired runs")
    print(f"{'mode':<20}{'sigma':<10}{'us/step':>10}{'x gd':>8}{'target':>8}")
    print(f"{'gd':<20}{'-':<10}{1e6 * statistics.median(times['gd', '-']):>10.0f}{1.0:>8.2f}")
    for (mode, sigma), r in ratios.items():
        target = TARGET.get(mode)
        print(f"{mode:<20}{sigma:<10}{1e6 * statistics.median(times[mode, sigma]):>10.0f}"
              f"{statistics.median(r):>8.2f}{(f'<= {target}' if target else ''):>8}")

if __name__ == "__main__":
    main()
