"""Tasks: what a run does with its config (`task=train`, later `task=escape`)."""
from __future__ import annotations

import contextlib
import functools
import gc
import json
from pathlib import Path
from typing import Callable, Iterator, Optional

from omegaconf import DictConfig, open_dict

from sgdexp.config import validate
from sgdexp.interrupts import terminate_as_interrupt
from sgdexp.registry import Registry
from sgdexp.rundir import RunDirectory, implicit_resume

TASKS: Registry[Callable[..., float]] = Registry("task.name")


def read_summary(out_dir: Path) -> dict:
    """The run's summary.json; {} where there is none (or it cannot be read)."""
    try:
        return json.loads((Path(out_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def final_line(out_dir: Path, label: Optional[str] = None) -> str:
    """`[job 1 optimizer.lr=0.1] completed at step 1000: test/loss=0.12 ... -> outputs in /abs/dir`, from the
    run's summary.json: labelled, so that a sweep's interleaved last lines say which job each is."""
    out_dir = Path(out_dir).resolve()
    summary = read_summary(out_dir)
    shown = [f"{k}={summary[k]:.4g}" for k in ("train/loss", "test/loss", "test/accuracy", "escape/fraction",
                                                "escape/mean_steps", "escape/mean_steps_low")
             if isinstance(summary.get(k), (int, float))]
    status = summary.get("status", "finished") + (f" at step {summary['step']}" if "step" in summary else "")
    if shown and summary.get("evaluated_step", summary.get("step")) != summary.get("step"):
        status += f" (evaluated at step {summary['evaluated_step']})"  # a diverged or interrupted run's last evaluation
    head = f"[{label}] " if label else ""
    resume = (f" (trainer.resume=true continues it from its checkpoint at step {summary['checkpoint_step']})"
              if summary.get("status") == "interrupted" and summary.get("checkpoint_step") else "")
    return f"{head}{status}{': ' + ', '.join(shown) if shown else ''}{resume} -> outputs in {out_dir}"


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects that exist now (about 425k once torch, scipy and Hydra are imported) kept out of
    the garbage collector's walks until the block ends (`gc.freeze`). A full collection walks them all
    in 0.1-0.25 s, and one lands at random in a run (set off by a checkpoint's config copy, an
    analysis' import): 5% of a 10⁴-step MLP run. They live as long as the run anyway; objects made
    in the block are collected as before, and all are collectable again after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_task(cfg: DictConfig, out_dir: Path, group: Optional[str] = None, label: Optional[str] = None,
             say: Callable[[str], None] = functools.partial(print, flush=True),
             on_claim: Optional[Callable[[RunDirectory], None]] = None) -> float:
    """Validate `cfg`, own `out_dir` (lock, no overwrite, resume guard: sgdexp.rundir), run the task;
    its last line (`say`: printed, or the CLI's log) says how it ended and where its outputs are.

    `on_claim(run_dir)` runs once the directory is ours and the checks passed (the CLI writes .hydra/ there)."""
    validate(cfg)
    if implicit_resume() and not cfg.trainer.resume:
        with open_dict(cfg):  # a requeued submitit job continues its own checkpoint (README: requeue rule)
            cfg.trainer.resume = True
    with RunDirectory(out_dir).claim(cfg) as run_dir:
        if on_claim is not None:
            on_claim(run_dir)
        try:
            with frozen_heap(), terminate_as_interrupt():
                return TASKS.get(cfg.task.name)(cfg, out_dir, group=group)
        finally:
            if (Path(out_dir) / "summary.json").exists():
                say(final_line(out_dir, label))


from sgdexp.tasks import train  # noqa: E402,F401  (registers the task)
from sgdexp.tasks import escape  # noqa: E402,F401  (registers task=escape)
