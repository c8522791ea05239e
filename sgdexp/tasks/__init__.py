"""Tasks: what a run does with its config (`task=train`, later `task=escape`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig, open_dict

from sgdexp.config import validate
from sgdexp.registry import Registry
from sgdexp.rundir import RunDirectory, implicit_resume

TASKS: Registry[Callable[..., float]] = Registry("task.name")


def run_task(cfg: DictConfig, out_dir: Path, group: Optional[str] = None,
             on_claim: Optional[Callable[[RunDirectory], None]] = None) -> float:
    """Validate `cfg`, own `out_dir` (lock, no overwrite, resume guard: sgdexp.rundir), run the task.

    `on_claim(run_dir)` runs once the directory is ours and the checks passed (the CLI writes .hydra/ there)."""
    validate(cfg)
    if implicit_resume() and not cfg.trainer.resume:
        with open_dict(cfg):  # a requeued submitit job continues its own checkpoint (README: requeue rule)
            cfg.trainer.resume = True
    with RunDirectory(out_dir).claim(cfg) as run_dir:
        if on_claim is not None:
            on_claim(run_dir)
        return TASKS.get(cfg.task.name)(cfg, out_dir, group=group)


from sgdexp.tasks import train  # noqa: E402,F401  (registers the task)
from sgdexp.tasks import escape  # noqa: E402,F401  (registers task=escape)
