"""Learning-rate schedules as pure functions of the step.

Written here rather than with `torch.optim.lr_scheduler` because a pure function needs no state to
checkpoint (a resumed run is exact by construction) and costs nothing on steps where lr is constant.
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, List, Optional

from omegaconf import DictConfig


def constant_lr(cfg) -> bool:
    """Whether the learning rate never changes: no schedule and no warmup. `cfg`: the trainer's config,
    or an analysis' that copies its `lr_schedule` and `warmup_steps` (curvature's prediction)."""
    return cfg.lr_schedule == "constant" and cfg.warmup_steps == 0


def unreached_points(trainer: DictConfig) -> List[str]:
    """The schedule's points past `trainer.steps` (warmup's end, a step milestone), as `key=value`: in
    this run they do nothing (a resume may extend the run to them)."""
    steps = int(trainer.steps)
    late = [f"trainer.warmup_steps={trainer.warmup_steps}"] if trainer.warmup_steps > steps else []
    if trainer.lr_schedule == "step":
        late += [f"trainer.lr_milestones has {m}" for m in trainer.lr_milestones if m > steps]
    return late


def lr_factor_fn(trainer: DictConfig, steps: Optional[int] = None) -> Callable[[int], float]:
    """factor(step) for the update taken at `step` (0-based), multiplying the optimizer's lr. `trainer`:
    the trainer's config, or an analysis' that copies its schedule keys (`lr_schedule`, `lr_milestones`,
    `lr_gamma`, `warmup_steps`) with the run's `steps` given apart."""
    # Plain Python values, read once: `factor` runs at every step of a scheduled run, where a config
    # read costs microseconds, and ~0.3 ms through an analysis' interpolations (curvature's copy).
    steps = int(trainer.steps if steps is None else steps)
    warmup, schedule, gamma = int(trainer.warmup_steps), str(trainer.lr_schedule), float(trainer.lr_gamma)
    milestones = sorted(int(m) for m in trainer.lr_milestones) or [steps // 2, (3 * steps) // 4]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "step":
            return gamma ** bisect.bisect_right(milestones, step)
        if schedule == "cosine":
            progress = (step - warmup) / max(1, steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor
