"""Per-step wall time of every noise mode relative to plain `gd`, on the default MLP and digits.

    python scripts/bench_noise_modes.py [--rounds 9] [--quick]

Every variant is built once and warmed up; then, round after round, each variant runs a block of
`match_every` = 250 steps (noise application and optimizer step, metrics measured every 10th
step as in training) right after a block of `gd`, and the ratio of the two blocks is taken. The
median ratio over rounds is printed: neighbouring blocks see the same machine, while its speed
drifts over a whole benchmark. A block holds exactly one re-estimate of a matched σ, so its cost is
amortised as in training.
Rows: σ fixed (the generator's cost, plus the target power logged every 250 steps) and σ matched
(re-estimated from `noise.match_samples` random samples in minibatches); the i.i.d. modes also with `trainer.compile=true` (their sampler and the
per-sample norms of the matched σ as torch.compile kernels). Targets: white, Lévy and
anti-correlated <= 1.1x, streaming fGn <= 1.3x, SGD-covariance <= 3x.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sgdexp.config import compose_config
from sgdexp.tasks.setup import build_setup

COMPILED = ("trainer.compile=true",)
VARIANTS = [(mode, sigma, options) for mode in ("gd_white", "gd_levy", "gd_anticorrelated")
            for options in ((), COMPILED) for sigma in ("0.01", "matched")]
VARIANTS += [(mode, sigma, ()) for mode in ("gd_fbm", "gd_sgdcov") for sigma in ("0.01", "matched")]
TARGET = {"gd_white": 1.1, "gd_levy": 1.1, "gd_anticorrelated": 1.1, "gd_fbm": 1.3, "gd_sgdcov": 3.0}
BLOCK = 250  # = noise.match_every


class Runner:
    """One built setup that runs blocks of steps, continuing its own step count."""

    def __init__(self, overrides):
        self.setup = build_setup(compose_config(["device=cpu", "logger=none", *overrides]))
        self.step = 0
        self.run(10)  # warm-up: first matched σ, vmap tracing, torch.compile

    def run(self, steps: int) -> float:
        noise, optimizer = self.setup.noise, self.setup.optimizer
        t0 = time.perf_counter()
        for step in range(self.step + 1, self.step + steps + 1):
            noise.apply(step, measure=step % 10 == 0)
            optimizer.step()
        self.step += steps
        return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    gd = Runner(["noise=gd"])
    runners = {v: Runner([f"noise={v[0]}", f"noise.sigma={v[1]}", *v[2]]) for v in VARIANTS}
    ratios, times, gd_times = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}, []
    for _ in range(rounds):
        for variant, runner in runners.items():
            reference = gd.run(BLOCK)
            t = runner.run(BLOCK)
            gd_times.append(reference)
            times[variant].append(t)
            ratios[variant].append(t / reference)
    print(f"default MLP on digits (N=1437, d=26122), blocks of {BLOCK} steps, threads={torch.get_num_threads()}, "
          f"median of {rounds} rounds (each block right after a gd block)")
    print(f"{'mode':<20}{'sigma':<10}{'options':<22}{'us/step':>9}{'x gd':>7}{'range':>14}{'target':>9}")
    print(f"{'gd':<20}{'-':<10}{'':<22}{1e6 * statistics.median(gd_times):>9.0f}{1.0:>7.2f}")
    for (mode, sigma, options), r in ratios.items():
        target = TARGET.get(mode)
        print(f"{mode:<20}{sigma:<10}{' '.join(options):<22}{1e6 * statistics.median(times[mode, sigma, options]):>9.0f}"
              f"{statistics.median(r):>7.2f}{f'{min(r):.2f}-{max(r):.2f}':>14}{(f'<= {target}' if target else ''):>9}")


if __name__ == "__main__":
    main()
