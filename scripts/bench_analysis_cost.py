"""The cost of analyses at their default schedules, as a fraction of a training run's wall time.

    python scripts/bench_analysis_cost.py [--quick] [--repeats N] [--threads T] [--steps S] [--models mlp,resnet]
                                          [--analyses A,B] [override ...]

For each model in MODELS, a run without analyses and one with each entry of ANALYSES (default
schedule, `--steps` steps: 1000 as `python -m sgdexp`), `logger=none`; the cost is (t_with − t_without) /
t_without from `summary.json`'s `wall_time_s`, the median over `--repeats` repeats, each of which
runs them all back to back, and the fastest run with the analysis against the fastest without.
curvature's default schedule measures the end of the run and every 10000 steps from step 10000:
a 1000-step run pays one measurement, whose cost is fixed, so the script also prints what that
measurement costs in training steps and in epochs of training, the fractions at the default
schedules in runs of 10⁴ and 10⁵ steps, and the shortest run within the 20% target for diffusion +
curvature together (projected from the measured figures; `--steps 20000` measures a longer run
directly). Both from whole runs and from the analyses' own calls, which the training loop times
(`analysis_time_s/<name>` in summary.json): the second is steadier on a shared machine, the first
includes what an analysis costs training indirectly (caches it evicts). Add an analysis by
adding a line to ANALYSES (its overrides), a model by adding one to MODELS. `--quick`: one repeat and
a smaller ResNet (depth 8, width 8), so the ResNet figure is a lower bound there.

`--command`: instead, the whole `python -m sgdexp` command as a user runs it (W&B offline, figures
drawn, start-up and all), timed from outside, without and with each entry of ANALYSES: what a user
waits for, where the figures above count the training loop alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

import numpy as np
import torch

from sgdexp.config import compose_config
from sgdexp.tasks import run_task

ANALYSES: Dict[str, List[str]] = {
    "curvature": ["analysis=[curvature]"],
    "generalization": ["analysis=[generalization]"],
    "diffusion": ["analysis=[diffusion]"],
    "diffusion+curvature": ["analysis=[diffusion,curvature]"],  # issue target: <= 20% together
}
MODELS: Dict[str, List[str]] = {
    "mlp": [],
    "resnet": ["model=resnet"],
}
QUICK_MODELS: Dict[str, List[str]] = {"resnet": ["model=resnet", "model.depth=8", "model.width=8"]}


T = TypeVar("T")
TARGET = 0.20  # the target for diffusion + curvature together


def run_summary(overrides: List[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_task(compose_config(["device=cpu", "logger=none", "trainer.progress=false", "trainer.figures=false",
                                 f"trainer.steps={steps}", *overrides]), Path(tmp))
        return json.loads((Path(tmp) / "summary.json").read_text())


def paired_cost(times: List[float], plain: List[float]) -> Tuple[float, float]:
    """(the median over repeats of (t_with − t_plain) / t_plain of each interleaved pair, the fastest
    run with the analysis against the fastest without). The second because the VM's noise only ever
    adds time, so the minimum is the steadier estimate of a run's own time over many repeats (timeit)."""
    return (statistics.median((t - p) / p for t, p in zip(times, plain)), min(times) / min(plain) - 1)


def command_seconds(overrides: List[str], steps: int) -> float:
    """Wall time of `python -m sgdexp` with the default logger (W&B offline) and figures, in a
    temporary working directory."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sgdexp", "device=cpu", "trainer.progress=false", "hydra.run.dir=run",
                        f"trainer.steps={steps}", *overrides], cwd=tmp, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def interleaved(measure: Callable[[List[str]], T], overrides: List[str], analyses: Dict[str, List[str]],
                repeats: int) -> Tuple[List[T], Dict[str, List[T]]]:
    """`measure` of the plain run and of each analysis run, `repeats` times, interleaved: a cost is
    then the median over repeats of (t_with - t_plain) / t_plain of one repeat (`paired_cost`), since
    on a shared VM the wall time of a 0.5 s run drifts by +-20% between minutes, and a pair taken
    together shares the drift."""
    plain: List[T] = []
    runs: Dict[str, List[T]] = {name: [] for name in analyses}
    for _ in range(repeats):
        plain.append(measure(overrides))
        for name, extra in analyses.items():
            runs[name].append(measure(overrides + extra))
    return plain, runs


def print_costs(model: str, what: str, plain: List[float], times: Dict[str, List[float]],
                own: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """Prints the plain time and each analysis' cost (paired median, fastest against fastest, and its
    own calls' share where `own` has it); returns the costs."""
    print(f"{model:8s} plain {what:14s} {statistics.median(plain):8.2f} s (median; {min(plain):.2f}-{max(plain):.2f})")
    costs = {}
    for name, runs in times.items():
        costs[name], fastest = paired_cost(runs, plain)
        own_calls = f"; its own calls, timed in the loop: {100 * own[name]:5.1f}%" if own else ""
        print(f"{model:8s} + {name:18s} {statistics.median(runs):8.2f} s   cost {100 * costs[name]:6.1f}%"
              f"   (fastest against fastest: {100 * fastest:5.1f}%{own_calls})")
    return costs


def wall_time(summary: dict) -> Tuple[float, float]:
    """(the run's wall time, its analyses' own share: their timed calls over the rest of the run)."""
    own = sum(v for k, v in summary.items() if k.startswith("analysis_time_s/"))
    return summary["wall_time_s"], own / (summary["wall_time_s"] - own)


def curvature_measurements(steps):
    """Measurements of curvature's default schedule in a run of `steps` (an int or an array): the
    end, and every 10000 steps before it."""
    return 1 + (steps - 1) // 10000


def shortest_run_within(target: float, per_step: float, measurement_steps: float, longest: int = 10 ** 6) -> int:
    """The fewest steps L such that every run of L to `longest` steps stays within `target` with
    diffusion's per-step share `per_step` and curvature's measurements at the default schedule, each
    as long as `measurement_steps` training steps (0 when the longest does not). A run just past a
    multiple of 10000 pays two measurements close together, so the share is not monotonic in L."""
    steps = np.arange(1, longest + 1)
    share = per_step + curvature_measurements(steps) * measurement_steps / steps
    if share[-1] > target:
        return 0
    over = np.flatnonzero(share > target)
    return int(over[-1]) + 2 if len(over) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    parser.add_argument("--analyses", default=",".join(ANALYSES),
                        help=f"comma-separated, of {list(ANALYSES)} (e.g. only the target's on a long ResNet run)")
    parser.add_argument("--command", action="store_true",
                        help="time the whole `python -m sgdexp` command (start-up, W&B offline, figures)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (e.g. noise.batch_size=128)")
    args = parser.parse_args()
    analyses = {name: ANALYSES[name] for name in args.analyses.split(",")}
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    steps = args.steps
    what = "whole commands" if args.command else f"torch threads {torch.get_num_threads()}"
    print(f"{what}, {repeats} repeat(s), {steps} steps; cost = extra wall time / plain "
          f"{'command' if args.command else 'run'}; overrides {args.overrides}")
    for model in args.models.split(","):
        run_overrides = (QUICK_MODELS.get(model, MODELS[model]) if args.quick else MODELS[model]) + args.overrides
        if args.command:
            plain, times = interleaved(lambda o: command_seconds(o, steps), run_overrides, analyses, repeats)
            print_costs(model, "command", plain, times)
            continue
        summaries, runs = interleaved(lambda o: run_summary(o, steps), run_overrides, analyses, repeats)
        plain = [summary["wall_time_s"] for summary in summaries]
        epochs = summaries[-1]["epoch"]  # of training data the run passes over
        measured = {name: [wall_time(summary) for summary in results] for name, results in runs.items()}
        own = {name: statistics.median(o for _, o in results) for name, results in measured.items()}
        times = {name: [t for t, _ in results] for name, results in measured.items()}
        costs = print_costs(model, "run", plain, times, own)
        base = statistics.median(plain)
        extra = {name: cost * base for name, cost in costs.items()}
        own_extra = {name: share * base for name, share in own.items()}
        # projected from one curvature measurement (at the end) and diffusion's cost per step
        if steps < 10000 and {"curvature", "diffusion"} <= set(analyses):
            step_time = base / steps
            for label, costs in (("whole runs", extra), ("own calls", own_extra)):
                measurement = costs["curvature"]
                in_steps, diffusion = measurement / step_time, costs["diffusion"] / steps / step_time
                for long in (10_000, 100_000):
                    measurements = curvature_measurements(long)
                    curvature = measurements * measurement / (long * step_time)
                    print(f"{model:8s} projected ({label}) for a {long}-step run at the default schedules: "
                          f"curvature {100 * curvature:.1f}% ({measurements} measurement(s) of {measurement:.2f} s = "
                          f"{in_steps:.0f} training steps), diffusion {100 * diffusion:.1f}%, "
                          f"together {100 * (curvature + diffusion):.1f}%")
                # a measurement passes over the training set once per Hessian-vector product, so its
                # cost in epochs of training carries over to other dataset sizes at this batch size
                shortest = shortest_run_within(TARGET, diffusion, in_steps)
                verdict = (f"within {100 * TARGET:.0f}% in every run of at least {shortest} steps "
                           f"({shortest * epochs / steps:.0f} epochs)" if shortest else
                           f"over {100 * TARGET:.0f}% even in a run of 10^6 steps")
                print(f"{model:8s} ({label}) one curvature measurement = {in_steps * epochs / steps:.1f} epochs of "
                      f"training at this batch size; diffusion + curvature {verdict}")


if __name__ == "__main__":
    main()
