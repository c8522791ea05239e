"""Tasks: what a run does with its config (`task=train`, later `task=escape`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig

from sgdexp.config import validate
from sgdexp.registry import Registry

TASKS: Registry[Callable[..., float]] = Registry("task.name")


def run_task(cfg: DictConfig, out_dir: Path, group: Optional[str] = None) -> float:
    validate(cfg)
    return TASKS.get(cfg.task.name)(cfg, out_dir, group=group)


from sgdexp.tasks import train  # noqa: E402,F401  (registers the task)
from sgdexp.tasks import escape  # noqa: E402,F401  (registers task=escape)
