"""sgdexp's training wall time against a bare PyTorch loop of the same model, data, batch and steps.

    python scripts/bench_overhead.py [--steps 3000] [--repeats 5] [overrides ...]

Both run in this process, interleaved, analyses off and `logger=none`; the ratio of the fastest repeats is
printed (target: <= 1.05). sgdexp's time is the train loop as `summary.json` reports it (evaluation
at step 0 and at the end, metrics every `log_every` steps, a checkpoint at the end); the bare loop
evaluates once at the end.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sgdexp.config import compose_config
from sgdexp.data import load_dataset
from sgdexp.models import build_model
from sgdexp.tasks import run_task


def bare_loop(cfg) -> float:
    data = load_dataset(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_outputs)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    x, y, b = data.x_train, data.y_train, cfg.noise.batch_size
    gen = torch.Generator().manual_seed(cfg.seed)
    per_epoch = len(x) // b
    t0 = time.perf_counter()
    for step in range(cfg.trainer.steps):
        if step % per_epoch == 0:
            perm = torch.randperm(len(x), generator=gen)
        idx = perm[(step % per_epoch) * b : (step % per_epoch + 1) * b]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.eval()
        F.cross_entropy(model(data.x_test), data.y_test).item()
    return time.perf_counter() - t0


def sgdexp_loop(cfg) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_task(cfg, Path(tmp))
        return json.loads((Path(tmp) / "summary.json").read_text())["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 1000, 3
    overrides = ["device=cpu", "logger=none", "trainer.progress=false", f"trainer.steps={args.steps}",
                 "trainer.eval_every=0", "trainer.checkpoint_every=0", *args.overrides]
    cfg = compose_config(overrides)
    sgdexp_loop(cfg), bare_loop(cfg)  # warm-up: first-call costs of both paths
    ours, bare = [], []
    for _ in range(args.repeats):
        ours.append(sgdexp_loop(cfg))
        bare.append(bare_loop(cfg))
    # The minimum over interleaved repeats is the least disturbed by other load on the machine (timeit's rule).
    m_ours, m_bare = min(ours), min(bare)
    print(f"model={cfg.model.name} dataset={cfg.dataset.name} batch={cfg.noise.batch_size} steps={args.steps} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"bare PyTorch loop : {m_bare:.3f} s  ({1e6 * m_bare / args.steps:.0f} us/step)")
    print(f"sgdexp train task : {m_ours:.3f} s  ({1e6 * m_ours / args.steps:.0f} us/step)")
    print(f"overhead ratio    : {m_ours / m_bare:.3f}  (min over repeats; target <= 1.05)")
    print(f"median ratio      : {statistics.median(ours) / statistics.median(bare):.3f}")


if __name__ == "__main__":
    sys.exit(main())
