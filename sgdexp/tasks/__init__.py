"""Tasks: what a run does with its config (`task=train`, later `task=escape`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig

from sgdexp.config import validate
from sgdexp.registry import Registry

TASKS: Registry[Callable[..., float]] = Registry("task.name")

log = logging.getLogger("sgdexp")


def final_line(out_dir: Path, label: Optional[str] = None) -> str:
    """`[job 1 optimizer.lr=0.1] completed at step 1000: test/loss=0.12 ... -> outputs in /abs/dir`, from the
    run's summary.json: labelled, so that a sweep's interleaved last lines say which job each is."""
    out_dir = Path(out_dir).resolve()
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    shown = [f"{k}={summary[k]:.4g}" for k in ("train/loss", "test/loss", "test/accuracy")
             if isinstance(summary.get(k), (int, float))]
    status = f"{summary.get('status', 'finished')} at step {summary.get('step', '?')}"
    head = f"[{label}] " if label else ""
    return f"{head}{status}{': ' + ', '.join(shown) if shown else ''} -> outputs in {out_dir}"


def run_task(cfg: DictConfig, out_dir: Path, group: Optional[str] = None, label: Optional[str] = None) -> float:
    """Run `cfg.task` in `out_dir` and say, in its last line, how it ended and where its outputs are."""
    validate(cfg)
    try:
        return TASKS.get(cfg.task.name)(cfg, out_dir, group=group)
    finally:
        if (Path(out_dir) / "summary.json").exists():
            line = final_line(out_dir, label)
            # The CLI has logging set up (console and sgdexp.log); a notebook or script has not: print there.
            if logging.getLogger().handlers:
                log.info(line)
            else:
                print(line, flush=True)


from sgdexp.tasks import train  # noqa: E402,F401  (registers the task)
