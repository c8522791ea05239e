"""The cost of analyses at their default schedules, as a fraction of a training run's wall time.

    python scripts/bench_analysis_cost.py [--quick] [--repeats N] [--threads T]

For each model in MODELS, a run without analyses and one with each entry of ANALYSES (default
schedule, 1000 steps as `python -m sgdexp`), `logger=none`; the cost is (t_with − t_without) /
t_without from `summary.json`'s `wall_time_s`, fastest of `--repeats` runs. Add an analysis by
adding a line to ANALYSES (its overrides), a model by adding one to MODELS. `--quick`: one repeat and
a smaller ResNet (depth 8, width 8), so the ResNet figure is a lower bound there.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Dict, List

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


def wall_time(overrides: List[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_task(compose_config(["device=cpu", "logger=none", "trainer.progress=false", *overrides]), Path(tmp))
        return json.loads((Path(tmp) / "summary.json").read_text())["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"torch threads {torch.get_num_threads()}, {repeats} repeat(s); cost = extra wall time / plain run")
    for model, model_overrides in MODELS.items():
        if args.quick:
            model_overrides = QUICK_MODELS.get(model, model_overrides)
        base = min(wall_time(model_overrides) for _ in range(repeats))
        print(f"{model:8s} plain run            {base:8.2f} s")
        for name, overrides in ANALYSES.items():
            t = min(wall_time(model_overrides + overrides) for _ in range(repeats))
            print(f"{model:8s} + {name:18s} {t:8.2f} s   cost {100 * (t - base) / base:6.1f}%")


if __name__ == "__main__":
    main()
