"""`task=train`: the step loop. Evaluate, log, checkpoint on a schedule; stop cleanly on divergence."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sgdexp.checkpoint import load_checkpoint, save_checkpoint
from sgdexp.schedules import lr_factor_fn
from sgdexp.tasks import TASKS
from sgdexp.tasks.setup import Setup, build_setup
from sgdexp.tracking import Tracker

log = logging.getLogger(__name__)


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _evaluate(setup: Setup) -> Dict[str, float]:
    row = {**setup.source.evaluate("train"), **setup.source.evaluate("test")}
    row["gap/loss"] = row["test/loss"] - row["train/loss"]
    if "test/accuracy" in row:
        row["gap/accuracy"] = row["train/accuracy"] - row["test/accuracy"]
    return row


def _checkpoint(out_dir: Path, setup: Setup, cfg: DictConfig, step: int, wall: float) -> None:
    save_checkpoint(out_dir, {
        "step": step,
        "wall_time_s": wall,
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "noise": setup.noise.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    })


@TASKS.register("train")
def train(cfg: DictConfig, out_dir: Path, group: Optional[str] = None) -> float:
    """Train `cfg.model` on `cfg.dataset` with `cfg.noise`; return the final test loss."""
    trainer = cfg.trainer
    setup = build_setup(cfg)  # every ConfigError is raised here, before anything is written
    out_dir = Path(out_dir)

    start, wall_before = 0, 0.0
    state = load_checkpoint(out_dir, map_location=setup.device) if trainer.resume else None
    if state is not None:
        setup.model.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.noise.load_state_dict(state["noise"])
        torch.set_rng_state(state["torch_rng"])
        start, wall_before = state["step"], state["wall_time_s"]
        log.info("Resuming from step %d of %s", start, out_dir)
    elif trainer.resume:
        log.info("No checkpoint in %s: starting from step 0", out_dir)

    tracker = Tracker(cfg, out_dir, group=group, resume_step=start if state is not None else None)
    summary: Dict[str, Any] = {"status": "failed", "steps": trainer.steps, "step": start}
    last_eval: Dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        if start == 0:
            last_eval = _evaluate(setup)
            tracker.log({"step": 0, **last_eval})
        status, step = _loop(cfg, setup, tracker, out_dir, start, wall_before, t0, last_eval)
        summary.update(status=status, step=step)
        if status == "diverged":
            summary["diverged_step"] = step
    except KeyboardInterrupt:
        summary["status"] = "interrupted"
        raise
    except Exception as err:
        summary["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        summary.update(last_eval)
        summary["wall_time_s"] = wall_before + time.perf_counter() - t0
        tracker.finish(summary)
    log.info("%s at step %d: %s", summary["status"], summary["step"],
             ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
    return float(last_eval.get("test/loss", math.inf)) if summary["status"] == "completed" else math.inf


def _loop(cfg, setup: Setup, tracker: Tracker, out_dir: Path, start: int, wall_before: float, t0: float,
          last_eval: Dict[str, float]) -> tuple:
    """Steps start+1 .. trainer.steps. Returns (status, step reached or step that diverged).

    `last_eval` is updated in place, so the caller keeps the last evaluation however the loop ends.
    """
    trainer = cfg.trainer
    # Plain ints for the hot loop: a DictConfig attribute read costs microseconds.
    steps, log_every, eval_every, checkpoint_every = (
        int(trainer.steps), int(trainer.log_every), int(trainer.eval_every), int(trainer.checkpoint_every))
    lr_factor = lr_factor_fn(trainer)
    base_lr = cfg.optimizer.lr  # not the param groups' lr: a resumed optimizer holds the scheduled one
    constant_lr = trainer.lr_schedule == "constant" and trainer.warmup_steps == 0
    window: List[torch.Tensor] = []  # batch losses since the last log: checked for NaN/inf there
    bar = tqdm(total=steps, initial=start, disable=not trainer.progress, mininterval=1.0, dynamic_ncols=True,
               desc=f"{cfg.model.name}/{cfg.noise.name}")
    model, optimizer, noise = setup.model, setup.optimizer, setup.noise
    model.train()
    factor = lr_factor(start)
    try:
        for step in range(start + 1, steps + 1):
            if not constant_lr:
                factor = lr_factor(step - 1)
                for group in optimizer.param_groups:
                    group["lr"] = base_lr * factor
            log_due, eval_due = _due(step, log_every, steps), _due(step, eval_every, steps)
            checkpoint_due = _due(step, checkpoint_every, steps)
            due = log_due or eval_due or checkpoint_due
            window.append(noise.apply(step, measure=due))
            optimizer.step()
            if not due:
                continue
            # One host sync per logged step: the window's losses are checked for NaN/inf together.
            losses = torch.stack(window).cpu()
            window.clear()
            finite = torch.isfinite(losses)
            if not bool(finite.all()):
                bad = step - len(losses) + 1 + int((~finite).nonzero()[0])
                log.warning("Loss is %s at step %d: the run diverged; keeping what was measured",
                            losses[~finite][0].item(), bad)
                tracker.log({"step": bad, "diverged": 1})
                return "diverged", bad
            row: Dict[str, Any] = {"step": step, "train/batch_loss": float(losses.mean()),
                                   "lr": base_lr * factor, **noise.metrics()}
            if eval_due:
                last_eval.clear()
                last_eval.update(_evaluate(setup))
                row.update(last_eval)
            tracker.log(row)
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{row['train/batch_loss']:.4f}", refresh=False)
            if checkpoint_due:
                _checkpoint(out_dir, setup, cfg, step, wall_before + time.perf_counter() - t0)
        return "completed", steps
    finally:
        bar.close()
