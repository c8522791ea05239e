"""Cost of an analysis at its default schedule as a fraction of a training run's wall time.

    python scripts/bench_diffusion_cost.py            # default MLP 1000 steps, model=resnet 200 steps
    python scripts/bench_diffusion_cost.py --quick    # 200 and 30 steps

For each model and each analysis in ANALYSES (a list to extend: name -> overrides), one run with the
analysis; the time inside its hooks (record, observe, compute, figures) is summed by wrapping them, and
printed as a fraction of that run's wall time. Timing the hooks themselves, rather than subtracting the
wall times of two runs, keeps the figure meaningful on a shared machine where two identical runs differ
by more than the cost measured. Also the two wall times (without / with), for reference.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from sgdexp.config import compose_config
from sgdexp.tasks import run_task

ANALYSES = {"diffusion": ["analysis=[diffusion]"]}
HOOKS = ("record", "observe", "compute", "figures")
FAST = ["device=cpu", "logger=none", "trainer.progress=false"]


def timed_run(overrides, spent: list) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench_cost_"))
    cfg = compose_config(FAST + overrides)
    from sgdexp.analysis import ANALYSES as registry

    originals = []
    for name in cfg.analysis:
        cls = registry.get(name)
        for hook in HOOKS:
            if hook in cls.__dict__:
                fn = cls.__dict__[hook]

                def wrapper(self, *a, _fn=fn, **k):
                    t = time.perf_counter()
                    try:
                        return _fn(self, *a, **k)
                    finally:
                        spent[0] += time.perf_counter() - t
                originals.append((cls, hook, fn))
                setattr(cls, hook, wrapper)
    try:
        t = time.perf_counter()
        run_task(cfg, out)
        return time.perf_counter() - t
    finally:
        for cls, hook, fn in originals:
            setattr(cls, hook, fn)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    models = {"mlp (default)": ["trainer.steps=200" if args.quick else "trainer.steps=1000"],
              "resnet": ["model=resnet", "trainer.steps=30" if args.quick else "trainer.steps=200"]}
    print(f"torch threads {torch.get_num_threads()}; wall times in seconds (shared machine: noisy)")
    for model, base in models.items():
        plain = timed_run(base, [0.0])
        for name, extra in ANALYSES.items():
            spent = [0.0]
            wall = timed_run(base + extra, spent)
            print(f"{model:>14} {base[-1]:>18} {name:>10}: hooks {spent[0]:7.2f} s = {100 * spent[0] / wall:5.1f}% of the "
                  f"run's wall time ({wall:.1f} s; without the analysis {plain:.1f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
