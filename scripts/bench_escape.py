"""Escape replicas: replica-steps per second batched (all R replicas in one vmap'd step) against a
Python loop over the same replicas (each run alone, R = 1, through the same code: the escape
task's `task.replica_chunk=1`).

    python scripts/bench_escape.py [--quick]

Workloads (the issue's targets): the default MLP on digits with noise=sgd, B = 32, R = 128
(target >= 3x); landscape=double_well with d = 10, gd_white, R = 4096 (target >= 50x). The loop is
timed on the first `--loop` replicas and its rate per replica-step extrapolated (it is linear in R).
Weights start at the model's initialisation (the rate does not depend on being at a minimum).
"""
from __future__ import annotations

import argparse
import time

import torch

from sgdexp.config import compose_config
from sgdexp.models.landscapes import build_landscape
from sgdexp.optim import build_optimizer
from sgdexp.replicas import LandscapeObjective, NetworkObjective, ReplicaNoise
from sgdexp.tasks.setup import build_setup


def run(objective, theta, cfg, sigma, n_train, lo, hi, steps) -> float:
    """Seconds for `steps` steps of replicas lo..hi-1 run together (the escape task's inner loop)."""
    r = hi - lo
    params = {k: v.unsqueeze(0).repeat(r, *([1] * v.dim())) for k, v in theta.items()}
    optimizer = build_optimizer(cfg.optimizer, list(params.values()))
    noise = ReplicaNoise(cfg.noise, objective, sigma, cfg.seed, torch.arange(lo, hi), n_train)
    noise.signal(params, 1)  # warm-up: first-call costs out of the timing
    t0 = time.perf_counter()
    for step in range(2, steps + 2):
        _, grads = noise.signal(params, step)
        for k, p in params.items():
            p.grad = grads[k]
        optimizer.step()
    return time.perf_counter() - t0


def plain_mlp(setup, cfg, steps: int) -> float:
    """Seconds for `steps` steps of one replica the plain way: its own nn.Module, torch.optim and
    EpochSampler (sgdexp.data.samplers), ordinary autograd through GradientSource.backward_batch."""
    import copy

    from sgdexp.data import make_sampler
    from sgdexp.gradients import GradientSource

    model = copy.deepcopy(setup.model)
    source = GradientSource(model, setup.data, cfg.trainer.chunk_size)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    sampler = make_sampler("epoch", setup.data.n_train, cfg.noise.batch_size, 0, torch.device("cpu"))
    source.backward_batch(sampler.next())
    t0 = time.perf_counter()
    for _ in range(steps):
        source.backward_batch(sampler.next())
        optimizer.step()
    return time.perf_counter() - t0


def plain_well(landscape, sigma: float, lr: float, steps: int) -> float:
    """Seconds for `steps` steps of one double-well replica the plain way: a (1, d) tensor, its own
    torch.Generator, the analytic gradient and an in-place update."""
    theta = landscape.minimum()[None].clone()
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        grad = landscape.grad(theta)
        theta.sub_(grad.add_(torch.randn(theta.shape, generator=generator), alpha=sigma), alpha=lr)
    return time.perf_counter() - t0


def compare(name, objective, theta, cfg, sigma, n_train, replicas, loop, steps, plain):
    batched = replicas * steps / run(objective, theta, cfg, sigma, n_train, 0, replicas, steps)
    looped = loop * steps / sum(run(objective, theta, cfg, sigma, n_train, i, i + 1, steps) for i in range(loop))
    plain_rate = loop * steps / sum(plain() for _ in range(loop))
    print(f"{name}: R={replicas}, {steps} steps: batched {batched:,.0f} replica-steps/s; "
          f"loop of the same code at R=1 {looped:,.0f} ({batched / looped:.1f}x); "
          f"plain per-replica loop {plain_rate:,.0f} ({batched / plain_rate:.1f}x) [loops over {loop} replicas]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and loop replicas")
    parser.add_argument("--loop", type=int, default=None, help="replicas timed in the loop")
    args = parser.parse_args()
    torch.manual_seed(0)
    steps_mlp, steps_well = (10, 200) if args.quick else (40, 1000)
    loop = args.loop or (4 if args.quick else 16)

    cfg = compose_config(["device=cpu", "logger=none", "noise=sgd", "noise.batch_size=32"])
    setup = build_setup(cfg)
    setup.model.eval()
    objective = NetworkObjective(setup.model, setup.data.x_train, setup.data.y_train, setup.source.loss_fn,
                                 setup.source.per_sample_loss, cfg.trainer.chunk_size)
    theta = {k: p.detach().clone() for k, p in setup.model.named_parameters()}
    compare("mlp/digits sgd B=32", objective, theta, cfg, None, setup.data.n_train, 128, loop, steps_mlp,
            lambda: plain_mlp(setup, cfg, steps_mlp))

    cfg = compose_config(["device=cpu", "logger=none", "task=escape", "landscape=double_well", "landscape.dim=10",
                          "noise=gd_white", "noise.sigma=1", "optimizer.lr=0.01"])
    landscape = build_landscape(cfg.landscape)
    objective = LandscapeObjective(landscape)
    compare("double_well d=10 gd_white", objective, {"theta": landscape.minimum()}, cfg, 1.0, 0, 4096,
            loop * 4, steps_well, lambda: plain_well(landscape, 1.0, 0.01, steps_well))


if __name__ == "__main__":
    main()
