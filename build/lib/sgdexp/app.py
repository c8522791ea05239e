"""The task function behind the CLI: validate, pick the task, turn user mistakes into one line."""
from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sgdexp.errors import ConfigError


def output_dir() -> Path:
    """The job's Hydra output directory (each multirun job has its own)."""
    return Path(HydraConfig.get().runtime.output_dir)


def sweep_name() -> str | None:
    """The multirun directory's name, used as the W&B group; None for a single run."""
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode.name == "MULTIRUN" else None


def run(cfg: DictConfig) -> float:
    """Run `cfg.task` in this job's output directory; return the final test loss (for sweepers)."""
    from sgdexp.tasks import run_task

    try:
        return run_task(cfg, output_dir(), group=sweep_name())
    except ConfigError as err:
        # A user mistake: one line, no traceback, non-zero exit, nothing written by the task.
        print(f"sgdexp: error: {err}", file=sys.stderr)
        sys.exit(2)
