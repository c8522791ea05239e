"""Matched noise power against SGD's own batch noise, and the matched-σ standard error late in training.

    python scripts/matched_power.py [--quick]

1. At the default study's initial weights and after `--steps` of SGD (digits, MLP [128, 128], lr 0.1),
   for B = 1024 with the `epoch` sampler: the power E|σζ|² that `gd_white`'s matched σ injects,
   divided by SGD's measured batch-noise power E|g_B − ∇L|² (`--batches` batches drawn by the epoch
   sampler), targeting `noise.population=replacement` (tr(C)/B: what matched did before) and
   `epoch` ((N − B)/(N − 1) · tr(C)/B: now the default). 1.0 is a fair comparison.
2. The relative standard error of the matched target power that `gd_white` (defaults: B = 32,
   match_samples) logs late in a run of `--steps` steps, and the spread of 20 independent
   estimates at the final weights.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch

from sgdexp.config import compose_config
from sgdexp.data import make_sampler
from sgdexp.tasks import run_task
from sgdexp.tasks.setup import build_setup

FAST = ["device=cpu", "logger=none", "trainer.progress=false"]


def sgd_power(source, batch_size: int, batches: int) -> tuple[float, float]:
    full = source.full_grad_vector(eval_mode=True)
    sampler = make_sampler("epoch", source.n_train, batch_size, 7, torch.device("cpu"))
    rows = torch.stack([sampler.next() for _ in range(batches)])
    sq = source.batch_grad_sq_norms(rows, center=full)
    return float(sq.mean()), float(sq.std()) / math.sqrt(batches)


def ratios(weights, batch_size: int, batches: int) -> dict:
    out = {}
    for population in ("replacement", "epoch"):
        setup = build_setup(compose_config(FAST + ["noise=gd_white", f"noise.batch_size={batch_size}",
                                                   "noise.match_samples=0", f"noise.population={population}"]))
        if weights is not None:
            setup.model.load_state_dict(weights)
        setup.noise.apply(1)
        power, se = sgd_power(setup.source, batch_size, batches)
        out[population] = (setup.noise.injected_power() / power, se / power)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--match-samples", type=int, default=None, help="noise.match_samples (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="200 steps, 100 batches")
    args = parser.parse_args()
    steps, batches = (200, 100) if args.quick else (args.steps, args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        run_task(compose_config(FAST + [f"trainer.steps={steps}", "trainer.eval_every=0", "trainer.checkpoint_every=0"]),
                 Path(tmp) / "sgd")
        trained = torch.load(Path(tmp) / "sgd" / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name, weights in (("initial weights", None), (f"after {steps} SGD steps", trained)):
            r = ratios(weights, 1024, batches)
            print(f"B=1024 epoch sampler, {name}: injected/SGD power  before (tr C/B) {r['replacement'][0]:.3f}"
                  f"  now ((N-B)/(N-1) tr C/B) {r['epoch'][0]:.3f}  (relative SE of SGD's power {r['epoch'][1]:.3f})")
        cfg = compose_config(FAST + ["noise=gd_white", f"trainer.steps={steps}", "trainer.eval_every=0",
                                     "trainer.checkpoint_every=0", "trainer.log_every=10"]
                             + ([] if args.match_samples is None else [f"noise.match_samples={args.match_samples}"]))
        run_task(cfg, Path(tmp) / "white")
        rows = [json.loads(line) for line in (Path(tmp) / "white" / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r.get("noise/target_power")]
        # one value per estimate (rows repeat it until the next re-estimate)
        late = {r["noise/target_power"]: r["noise/target_power_se"] / r["noise/target_power"] for r in rows[len(rows) // 2:]}
        print(f"gd_white defaults (B={cfg.noise.batch_size}, match_samples={cfg.noise.match_samples}, "
              f"match_every={cfg.noise.match_every}): relative SE of the target power in the second half of "
              f"{steps} steps: " + ", ".join(f"{v:.3f}" for v in late.values()))
        setup = build_setup(cfg)
        setup.model.load_state_dict(torch.load(Path(tmp) / "white" / "checkpoints" / "last.pt",
                                               weights_only=True)["model"])
        setup.source.backward_full()
        est = torch.tensor([setup.noise.matched_sigma() ** 2 for _ in range(20)], dtype=torch.float64)
        print(f"20 independent matched σ² at the final weights: relative sd {float(est.std() / est.mean()):.3f}"
              f" (0 when exact: match_samples ≥ N = {setup.source.n_train})")


if __name__ == "__main__":
    main()
