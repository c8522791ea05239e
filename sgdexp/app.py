"""The task function behind the CLI: validate, pick the task, turn user mistakes into one line."""
from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sgdexp.errors import ConfigError, InterruptedJob, RefusedJob, StorageError

log = logging.getLogger("sgdexp")


def output_dir() -> Path:
    """The job's Hydra output directory (each multirun job has its own)."""
    return Path(HydraConfig.get().runtime.output_dir)


def sweep_dir() -> Optional[Path]:
    """The multirun directory that this job's directory is in; None for a single run or outside Hydra."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode.name == "MULTIRUN" else None


def sweep_name() -> str | None:
    """The multirun directory's name, used as the W&B group; None for a single run."""
    directory = sweep_dir()
    return directory.name if directory is not None else None


def job_label() -> Optional[str]:
    """`job 3 optimizer.lr=0.1 seed=1` in a multirun (its number and overrides), None for a single run."""
    hc = HydraConfig.get()
    if hc.mode.name != "MULTIRUN":
        return None
    return " ".join([f"job {hc.job.num}", *hc.overrides.task])


def log_header(cfg: DictConfig, out_dir: Path) -> None:
    """The first lines of `sgdexp.log`: where the run writes, what it was asked, on what, with which versions."""
    import hydra
    import torch

    from sgdexp.tasks.setup import resolve_device

    try:
        from importlib.metadata import version

        sgdexp_version = version("sgdexp")
    except Exception:  # noqa: BLE001 - a source checkout that was never installed
        sgdexp_version = "source"
    overrides = " ".join(HydraConfig.get().overrides.task) or "(none)"
    log.info("output directory: %s", out_dir.resolve())
    log.info("overrides: %s", overrides)
    # the thread count is part of what ran: float sums follow it (a joblib worker runs on fewer, README)
    log.info("device: %s (device=%s), torch threads: %d, seed: %d", resolve_device(cfg.device), cfg.device,
             torch.get_num_threads(), cfg.seed)
    log.info("versions: sgdexp %s, python %s, torch %s, hydra %s", sgdexp_version, platform.python_version(),
             torch.__version__, hydra.__version__)


def run(cfg: DictConfig) -> float:
    """Run `cfg.task` in this job's output directory; return the final test loss (for sweepers)."""
    from sgdexp.config import validate
    from sgdexp.interrupts import SweepInterrupts, exit_status, in_worker, sweep_stopped

    worker = in_worker()
    summary_before = _summary_stamp(output_dir()) if worker else None
    if worker:  # a job in a joblib worker process: Ctrl-C ends it as an interrupted job of the sweep
        SweepInterrupts.install()
        if sweep_stopped():  # asked after the handler is in place: no signal falls between the two
            raise _stopped_job(summary_before)
    SweepInterrupts.job_running = True
    try:
        validate(cfg)  # before importing torch: a wrong value is answered in a fraction of a second
        from sgdexp.tasks import run_task

        return run_task(cfg, output_dir(), group=sweep_name(), label=job_label(), say=log.info,
                        on_claim=lambda run_dir: claimed(cfg, run_dir.path))
    except ConfigError as err:
        # A user mistake: one line, no traceback, non-zero exit, nothing written by the task.
        print(f"sgdexp: error: {err}", file=sys.stderr)
        _remove_if_unused(output_dir())
        if sweep_dir() is not None:  # the sweep's other jobs run on, and it fails at the end (sgdexp.__main__)
            raise RefusedJob(f"{job_label()}: {err}") from None
        sys.exit(2)
    except StorageError as err:
        print(f"sgdexp: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the run's last line said where it stopped
        if worker:  # the launcher returns it as the job's result, and the sweep's last line names it
            raise _stopped_job(summary_before) from None
        sys.exit(exit_status(str(err)))
    finally:
        SweepInterrupts.job_running = False


def _summary_stamp(out_dir: Path) -> Optional[int]:
    """When the run directory's summary.json was last written (None: it has none): a resumed job's
    directory holds the last run's, which says nothing of this one."""
    try:
        return (out_dir / "summary.json").stat().st_mtime_ns
    except OSError:
        return None


def _stopped_job(summary_before: Optional[int]) -> InterruptedJob:
    """A sweep's job that Ctrl-C stopped in a worker: how far it got, from the summary.json it wrote;
    without one it had not started (its directory goes where Hydra's files are all it holds)."""
    out_dir = output_dir()
    if _summary_stamp(out_dir) == summary_before:
        _remove_if_unused(out_dir)
        return InterruptedJob(f"{job_label()}: not started")
    from sgdexp.tasks import read_summary

    summary = read_summary(out_dir)
    checkpoint = summary.get("checkpoint_step")
    return InterruptedJob(f"{job_label()}: interrupted at step {summary.get('step')}"
                          + (f" (checkpoint at step {checkpoint})" if checkpoint else ""))


def claimed(cfg: DictConfig, out_dir: Path) -> None:
    """Once the run owns its directory (and a resume passed its guard): the record of what runs."""
    save_hydra_files(cfg, out_dir)
    log_header(cfg, out_dir)


def _remove_if_unused(out_dir: Path) -> None:
    """A refused run leaves no directory behind: Hydra made it and its log file before the task ran;
    remove it when that log (and .hydra/) is all it holds: a directory with a run in it is left alone."""
    import shutil

    ours = {f"{HydraConfig.get().job.name}.log", ".hydra"}  # Hydra's log, and .hydra/ from `save_hydra_files`
    try:
        if {p.name for p in out_dir.iterdir()} <= ours:
            shutil.rmtree(out_dir)
            cwd = Path.cwd().resolve()
            for parent in out_dir.resolve().parents:  # outputs/<date>/ that Hydra made for it, if now empty
                if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
                    break
                parent.rmdir()
    except OSError:
        pass


def without_secrets(hydra: DictConfig) -> DictConfig:
    """Hydra's record with the values of secret-named environment variables hidden: a W&B key passed as
    `+hydra.job.env_set.WANDB_API_KEY=...` reaches the job's environment, not the run directory."""
    from omegaconf import OmegaConf

    from sgdexp.errors import shown, shown_arguments

    record = OmegaConf.to_container(hydra)
    env = record["job"].get("env_set") or {}
    record["job"]["env_set"] = {name: shown(name, value) for name, value in env.items()}
    for kind in ("hydra", "task"):
        record["overrides"][kind] = shown_arguments(record["overrides"].get(kind) or [])
    return OmegaConf.create({"hydra": record})


def save_hydra_files(cfg: DictConfig, out_dir: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as Hydra writes them, but only once the
    run owns its directory and its resume passed the guard (`hydra.output_subdir: null` keeps Hydra
    from writing them first, which overwrote the record of a run that was then refused)."""
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    folder = out_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml", resolve=False)
    OmegaConf.save(without_secrets(hc), folder / "hydra.yaml", resolve=False)
    OmegaConf.save(OmegaConf.create(list(hc.overrides.task)), folder / "overrides.yaml")
