"""`task=train`: the step loop. Evaluate, log, analyse, checkpoint on a schedule; stop cleanly on divergence."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sgdexp.analysis import Analysis, Measurement, build_analyses
from sgdexp.checkpoint import LAST, save_checkpoint
from sgdexp.errors import ConfigError, StorageError
from sgdexp.rundir import load_checkpoint_checked
from sgdexp.schedules import constant_lr, lr_factor_fn, unreached_points
from sgdexp.tasks import TASKS
from sgdexp.tasks.setup import Setup, build_setup
from sgdexp.tracking import Tracker

log = logging.getLogger(__name__)


def analysis_costs(analyses: List[Analysis], wall_time: float) -> Dict[str, float]:
    """Each analysis' own wall time (`analysis_time_s/<name>`: its calls from the training loop,
    timed there: recording, measuring and logging what it measured, its state for a checkpoint) and
    its cost against the run without analyses (`analysis_cost/<name>`: that time over the wall time
    less every analysis' time). What a run with it pays beyond that (writing its state into the
    checkpoint file, caches it evicts) shows only in a comparison of whole runs
    (scripts/bench_analysis_cost.py)."""
    rest = wall_time - sum(a.seconds for a in analyses)
    out: Dict[str, float] = {}
    for a in analyses:
        out[f"analysis_time_s/{a.name}"] = a.seconds
        out[f"analysis_cost/{a.name}"] = a.seconds / rest if rest > 0 else math.nan
    return out


def _timed(analysis: Analysis, call, *args):
    """`call(*args)`, its wall time added to the analysis' own (`analysis_time_s/<name>`)."""
    start = time.perf_counter()
    try:
        return call(*args)
    finally:
        analysis.seconds += time.perf_counter() - start


# Stopping rules (runs compared at equal fit): config key, metric of an evaluation, and whether the
# metric must fall to the target (loss) or rise to it (accuracy).
STOP_RULES = (("stop_at_train_loss", "train/loss", "<="), ("stop_at_train_accuracy", "train/accuracy", ">="))


def stop_rule_reached(trainer, row: Dict[str, Any]) -> Optional[Tuple[str, str, str]]:
    """The first `STOP_RULES` entry set in `trainer` whose target the evaluation `row` meets, else None."""
    for key, metric, way in STOP_RULES:
        target = trainer.get(key)
        if target is not None and metric in row and (row[metric] <= target if way == "<=" else row[metric] >= target):
            return key, metric, way
    return None


def _due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


class Training:
    """One training run in `out_dir`: built, resumed if asked, then `run()`."""

    def __init__(self, cfg: DictConfig, out_dir: Path, group: Optional[str] = None):
        self.cfg, self.out_dir = cfg, Path(out_dir)
        for key, metric, _ in STOP_RULES:
            if cfg.trainer.get(key) is not None and cfg.trainer.eval_every == 0:
                raise ConfigError(f"trainer.{key}", cfg.trainer[key],
                                  f"null unless trainer.eval_every > 0 (the {metric} is checked at each evaluation)")
        self.setup: Setup = build_setup(cfg)  # every ConfigError is raised here, before anything is written
        late = unreached_points(cfg.trainer)
        if late:
            log.warning("%s: past trainer.steps=%d, so not reached in this run", ", ".join(late), cfg.trainer.steps)
        if cfg.trainer.get("stop_at_train_accuracy") is not None and not self.setup.source.classification:
            raise ConfigError("trainer.stop_at_train_accuracy", cfg.trainer.stop_at_train_accuracy,
                              f"null for dataset={cfg.dataset.name} (a regression task has no accuracy)")
        self.analyses: List[Analysis] = build_analyses(cfg, self.setup.source, self.setup.noise)
        self.start, self.wall_before = 0, 0.0
        self.stopped: Optional[str] = None  # the stopping rule that ended the run early (at self.start when resumed)
        last = self.out_dir / LAST
        # The model's shapes are checked against the checkpoint's (one line, not load_state_dict's screenful).
        state = (load_checkpoint_checked(last, self.setup.model, map_location=self.setup.device)
                 if cfg.trainer.resume and last.exists() else None)
        if state is not None:
            self._restore(state)
            log.info("Resuming from step %d of %s", self.start, self.out_dir)
        elif cfg.trainer.resume:
            log.info("No checkpoint in %s: starting from step 0", self.out_dir)
        self.tracker = Tracker(cfg, self.out_dir, group=group, resume_step=self.start if state is not None else None)
        self.last_eval: Dict[str, float] = {}
        self.evaluated_step: Optional[int] = None  # the step of last_eval (a diverged or interrupted run's is earlier)
        self.logged_step = self.checkpoint_step = self.start  # the last step logged, and saved
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ state
    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def checkpoint(self, step: int) -> None:
        s = self.setup
        self.tracker.store.flush()  # rows up to the checkpoint are on disk before it is
        save_checkpoint(self.out_dir, {
            "step": step,
            "stopped": self.stopped is not None, "stopped_by": self.stopped or "",
            "wall_time_s": self.wall_time(),
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "noise": s.noise.state_dict(),
            "analyses": {a.name: _timed(a, a.state_dict) for a in self.analyses},
            "torch_rng": torch.get_rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        })
        self.checkpoint_step = step

    def _restore(self, state: Dict[str, Any]) -> None:
        s = self.setup  # the model's state is loaded by load_checkpoint_checked
        s.optimizer.load_state_dict(state["optimizer"])
        s.noise.load_state_dict(state["noise"])
        for a in self.analyses:
            if a.name in state["analyses"]:
                a.load_state_dict(state["analyses"][a.name])
        torch.set_rng_state(state["torch_rng"])
        self.start, self.wall_before = state["step"], state["wall_time_s"]
        if state.get("stopped", False):  # checkpoints from before stop_at_train_accuracy have no stopped_by
            self.stop_at(self.start, state.get("stopped_by") or "stop_at_train_loss")

    def stop_at(self, step: int, rule: str) -> None:
        """The stopping rule `rule` (a `STOP_RULES` key) reached at `step`: the run ends there, and its
        analyses take their end-of-run measurements there."""
        self.stopped = rule
        for a in self.analyses:
            a.end_at(step)

    # ------------------------------------------------------------------ measurements
    def evaluate(self, step: int) -> Dict[str, float]:
        source = self.setup.source
        row = {**source.evaluate("train"), **source.evaluate("test")}
        row["gap/loss"] = row["test/loss"] - row["train/loss"]
        if "test/accuracy" in row:
            row["gap/accuracy"] = row["train/accuracy"] - row["test/accuracy"]
        self.last_eval, self.evaluated_step = row, step
        return row

    def analyse(self, step: int, due: List[Analysis]) -> Dict[str, float]:
        scalars: Dict[str, float] = {}
        for a in due:
            measurement = _timed(a, self._measure, a, step)
            if measurement is not None:
                scalars.update(measurement.scalars)
        return scalars

    def _measure(self, analysis: Analysis, step: int) -> Optional[Measurement]:
        """One measurement, its arrays logged (the part of `analyse` timed as the analysis' own)."""
        measurement = analysis.compute(step)
        if measurement is not None:
            self.tracker.log_arrays(step, measurement.arrays)
        return measurement

    def log_figures(self) -> None:
        """The report's figures of this run (sgdexp.report: drawn from what the run and its analyses
        logged, by the same code that draws a sweep's) as figures/*.png and W&B images, after the
        run's wall time is taken (drawing is output, not training: about a second per run, most of
        it matplotlib's first figure); a figure that cannot be drawn warns and never fails the run."""
        try:  # from the run's record, on disk by now (Tracker.write_record)
            from sgdexp.report import load_run, run_figures

            for name, fig in run_figures([load_run(self.out_dir)]).items():
                self.tracker.log_figure(name, fig)
        except Exception as err:  # noqa: BLE001
            log.warning("Figures not drawn (%s: %s)", type(err).__name__, err)

    # ------------------------------------------------------------------ the run
    def run(self) -> float:
        """Train to `trainer.steps`; return the final test loss (inf unless completed)."""
        summary: Dict[str, Any] = {"status": "failed", "steps": self.cfg.trainer.steps, "step": self.start}
        try:
            if self.start == 0:
                for a in self.analyses:
                    if a.records_weights and a.recording(0):
                        _timed(a, a.record, 0)
                row = {"step": 0, **self.evaluate(0), **self.analyse(0, [a for a in self.analyses if a.due(0)])}
                self.tracker.log(row)
            status, step = self.loop()
            summary.update(status=status, step=step, **self.setup.noise.metrics())  # the mode's last statistics
            if status == "diverged":
                summary["diverged_step"] = step
            if self.stopped:
                summary["stopped_at_step"], summary["stopped_by"] = step, f"trainer.{self.stopped}"
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM, or submitit's requeue on preemption/timeout
            summary.update(status="interrupted", step=self.logged_step, checkpoint_step=self.checkpoint_step)
            raise
        except OSError as err:
            # Disk full or run directory unwritable: stop with what is on disk intact (the checkpoint is
            # replaced atomically, metrics rows are appended) and one line saying why.
            summary.update(step=self.logged_step, error=f"cannot write the run directory {self.out_dir}: {err}")
            raise StorageError(f"{summary['error']} (status: failed at step {summary['step']}; the files "
                               f"written before are intact, resume with trainer.resume=true once it is writable)") from err
        except Exception as err:
            summary["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            summary.update(self.last_eval)
            if self.evaluated_step is not None:
                summary["evaluated_step"] = self.evaluated_step
            for a in self.analyses:
                summary.update(a.last)
            summary["wall_time_s"] = self.wall_time()
            summary.update(analysis_costs(self.analyses, summary["wall_time_s"]))
            # The record before the figures, which take a second or more: whoever stopped the run may kill
            # it soon after (submitit's local controller sends SIGKILL 1 s after passing SIGINT on).
            unwritten: Optional[OSError] = None
            try:
                self.tracker.write_record(summary)
            except OSError as err:
                unwritten = err
            interrupted = None
            if self.cfg.trainer.figures and unwritten is None:
                try:
                    self.log_figures()
                except KeyboardInterrupt as err:  # the record is written; the interrupt goes on after W&B
                    interrupted = err
            self.tracker.finish_wandb(summary, checkpoint=self.out_dir / LAST)
            if unwritten is not None and "error" not in summary:  # else the first failure is on its way out
                raise StorageError(f"cannot write summary.json in {self.out_dir}: {unwritten} (status: failed; "
                                   f"metrics.jsonl and the checkpoint are intact)") from unwritten
            if interrupted is not None:
                raise interrupted
        earlier = (f" (evaluated at step {self.evaluated_step})"
                   if self.evaluated_step is not None and self.evaluated_step != summary["step"] else "")
        log.info("%s at step %d%s: %s", summary["status"], summary["step"], earlier,
                 ", ".join(f"{k}={v:.4g}" for k, v in self.last_eval.items()))
        return float(self.last_eval.get("test/loss", math.inf)) if summary["status"] == "completed" else math.inf

    def loop(self) -> Tuple[str, int]:
        """Steps start+1 .. trainer.steps. Returns (status, step reached or step that diverged)."""
        trainer, setup = self.cfg.trainer, self.setup
        # Plain ints for the hot loop: a DictConfig attribute read costs microseconds.
        steps, log_every, eval_every, checkpoint_every = (
            int(trainer.steps), int(trainer.log_every), int(trainer.eval_every), int(trainer.checkpoint_every))
        lr_factor = lr_factor_fn(trainer)
        base_lr = self.cfg.optimizer.lr  # not the param groups' lr: a resumed optimizer holds the scheduled one
        constant_rate = constant_lr(trainer)
        analyses, observers = self.analyses, [a for a in self.analyses if a.records_steps]
        recorders = [a for a in self.analyses if a.records_weights]
        window: List[torch.Tensor] = []  # batch losses since the last logged step, checked for NaN/inf there
        if self.stopped or self.start >= steps:
            # a resumed run that had ended (at its last step or its train-loss target): no step to
            # take; its final metrics are evaluated again (the same weights) for the summary it rewrites
            self.evaluate(self.start)
            return "completed", self.start
        bar = tqdm(total=steps, initial=self.start, disable=not trainer.progress, mininterval=1.0,
                   dynamic_ncols=True, desc=f"{self.cfg.model.name}/{self.cfg.noise.name}")
        model, optimizer, noise = setup.model, setup.optimizer, setup.noise
        model.train()
        factor = lr_factor(self.start)
        try:
            for step in range(self.start + 1, steps + 1):
                if not constant_rate:
                    factor = lr_factor(step - 1)
                    for group in optimizer.param_groups:
                        group["lr"] = base_lr * factor
                log_due, eval_due = _due(step, log_every, steps), _due(step, eval_every, steps)
                checkpoint_due = _due(step, checkpoint_every, steps)
                due = log_due or eval_due or checkpoint_due
                window.append(noise.apply(step, measure=due))
                for a in observers:
                    if a.observing(step):
                        _timed(a, a.observe, step)
                optimizer.step()
                for a in recorders:
                    if a.recording(step):
                        _timed(a, a.record, step)
                analyses_due = [a for a in analyses if a.due(step)] if analyses else analyses
                if not (due or analyses_due):
                    continue
                # One host sync per logged step: the window's losses are checked for NaN/inf together
                # (in Python: torch.isfinite on ten numbers costs more than the check itself).
                losses = torch.stack(window).tolist()
                window.clear()
                bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
                if bad is not None:
                    bad_step = step - len(losses) + 1 + bad
                    log.warning("Loss is %s at step %d: the run diverged; keeping what was measured",
                                losses[bad], bad_step)
                    self.tracker.log({"step": bad_step, "diverged": 1})
                    return "diverged", bad_step
                row: Dict[str, Any] = {"step": step, "train/batch_loss": sum(losses) / len(losses),
                                       "lr": base_lr * factor, **noise.metrics()}
                if eval_due:
                    row.update(self.evaluate(step))
                    reached = stop_rule_reached(trainer, row) if step < steps else None
                    if reached is not None:
                        # the run ends here: the analyses take their end-of-run measurements now
                        rule, metric, way = reached
                        log.info("%s %.4g %s trainer.%s=%g at step %d: the run ends here",
                                 metric, row[metric], way, rule, trainer[rule], step)
                        self.stop_at(step, rule)
                        checkpoint_due = True
                        bar.total = step  # the bar ends full at the stop, not at step/trainer.steps
                        analyses_due = [a for a in analyses if a.due(step)]
                row.update(self.analyse(step, analyses_due))
                self.tracker.log(row)
                self.logged_step = step
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{row['train/batch_loss']:.4f}", refresh=False)
                if checkpoint_due:
                    self.checkpoint(step)
                if self.stopped:
                    return "completed", step
            return "completed", steps
        finally:
            bar.close()


@TASKS.register("train")
def train(cfg: DictConfig, out_dir: Path, group: Optional[str] = None) -> float:
    """Train `cfg.model` on `cfg.dataset` with `cfg.noise`; return the final test loss."""
    if cfg.landscape.name != "none":  # else it would train the model on the dataset without a word
        raise ConfigError("landscape", cfg.landscape.name, "none with task=train, which trains model= on dataset=: "
                                                           "a landscape is the loss of task=escape (add task=escape)")
    return Training(cfg, out_dir, group).run()
