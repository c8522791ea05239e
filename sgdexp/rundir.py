"""One owner per run directory, no silent overwrite, and resumes that continue the same experiment.

Every task runs inside `RunDirectory(out_dir).claim(cfg)` (`sgdexp.tasks.run_task` does it):

- the run holds an exclusive `fcntl.flock` on `<out_dir>/.sgdexp.lock` for its lifetime; the OS
  releases it when the process dies, so a killed run never blocks its own resume, and a second run
  into a busy directory is refused with one line;
- a directory that already holds a run (`RUN_FILES`) is only entered to resume it: without
  `trainer.resume=true` (or a requeued submitit job, see `implicit_resume`) it is refused;
- a resume must have the config of its checkpoint except for `RESUMABLE_KEYS` (`check_resume`);
- a checkpoint's tensors must fit the model they are loaded into (`load_checkpoint_checked`, also
  for `task.init_from`).

Every refusal is a `ConfigError` raised before the task writes anything, so the directory is left
byte-identical and the CLI prints one line.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from sgdexp.checkpoint import LAST
from sgdexp.errors import ConfigError

LOCK = ".sgdexp.lock"
RESUMES = "resumes.jsonl"  # one line per resume: step and the resumable keys that changed
# Files whose presence means "a run was here" (Hydra's own sgdexp.log and .hydra/ do not count).
RUN_FILES = ("checkpoints/last.pt", "metrics.jsonl", "summary.json")

# Keys that may differ between a checkpoint's config and the run resuming it: none of them changes
# the trajectory of the weights (trainer.steps only extends it, see `_steps_change`). Listed in README.
RESUMABLE_KEYS = (
    "trainer.steps",
    "trainer.resume",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.checkpoint_every",
    "trainer.progress",
    "trainer.hvp_graph_mib",  # memory only: Hessian products are the same numbers kept or rebuilt (tested)
    "device",
    "logger.*",
)


def implicit_resume() -> bool:
    """A submitit job (SLURM or `submitit_local`) resumes by itself: submitit requeues a preempted or
    timed-out job into the same directory with the same config, so finding its own checkpoint there
    is the expected case. submitit exports SUBMITIT_EXECUTOR in every job it starts."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def holds_run(out_dir: Path) -> Optional[str]:
    """The first file showing that `out_dir` holds a run, or None."""
    for name in RUN_FILES:
        if (Path(out_dir) / name).exists():
            return name
    return None


def _flat(cfg: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    out: Dict[str, Any] = {}
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            out.update(_flat(value, f"{prefix}{key}."))
        if not cfg and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1]] = cfg
    return out


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".*") and key.startswith(k[:-1])) for k in RESUMABLE_KEYS)


def _steps_change(cfg: Mapping[str, Any], old: Any, new: Any, step: int) -> Optional[str]:
    """Why trainer.steps may not change from `old` to `new` at checkpoint `step` (None: it may)."""
    if new < step:
        return f"at least the checkpoint's step {step}"
    trainer = cfg["trainer"]
    if trainer["lr_schedule"] == "cosine" or (trainer["lr_schedule"] == "step" and not trainer["lr_milestones"]):
        return (f"{old} (the checkpoint's): the {trainer['lr_schedule']} schedule is laid out over trainer.steps; "
                f"set trainer.lr_milestones explicitly, or use lr_schedule=constant, to extend a run")
    if "diffusion" in (cfg.get("analysis") or {}):
        return (f"{old} (the checkpoint's) with analysis=[diffusion]: its log-spaced lags and the waiting times "
                f"it keeps are laid out over trainer.steps when the run starts")
    return None


ABSENT = object()  # a key one of two configs lacks (`config_differences`)


def difference(key: str, old: Any, new: Any, old_at: str, new_at: str) -> str:
    """One difference of `config_differences` as an error line names it: `key: 0.1 in the checkpoint, 0.3 now`."""
    show = lambda v: "(absent)" if v is ABSENT else repr(v)  # noqa: E731
    return f"{key}: {show(old)} {old_at}, {show(new)} {new_at}"


def config_differences(cfg: Any, checkpoint_config: Mapping[str, Any]) -> List[Tuple[str, Any, Any]]:
    """(key, checkpoint value, new value) for every key that differs, resumable or not."""
    new, old = _flat(cfg), _flat(checkpoint_config)
    return [(k, old.get(k, ABSENT), new.get(k, ABSENT)) for k in sorted(set(new) | set(old))
            if old.get(k, ABSENT) != new.get(k, ABSENT)]


def check_resume(cfg: Any, checkpoint_config: Mapping[str, Any], step: int = 0,
                 source: str = "checkpoint") -> Dict[str, Tuple[Any, Any]]:
    """Refuse (ConfigError) a resume whose config differs from its checkpoint's outside RESUMABLE_KEYS.
    A key the checkpoint's config lacks (added to sgdexp since) is the same run when it is null now
    (a feature left off, e.g. trainer.stop_at_train_accuracy), and refused at any other value.

    Returns the resumable keys that changed, {key: (checkpoint value, new value)}."""
    new_cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    changed, refused = {}, []
    for key, old, new in config_differences(new_cfg, checkpoint_config):
        if old is ABSENT and new is None:
            continue  # a key added by a later version of sgdexp, left at null (off): the same run
        if key == "trainer.steps":
            why = _steps_change(new_cfg, old, new, step)
            if why:
                raise ConfigError("trainer.steps", new, why)
        if _resumable(key):
            changed[key] = (old, new)
        else:
            refused.append(difference(key, old, new, f"in the {source}", "now"))
    if refused:
        raise ConfigError(
            "trainer.resume", True,
            f"the same config as the {source} except {', '.join(RESUMABLE_KEYS)}; differs in "
            + "; ".join(refused) + f" (resume with the {source}'s values, or choose another directory)")
    return changed


def read_checkpoint_config(path: Path) -> Tuple[Dict[str, Any], int]:
    """The config and step stored in a checkpoint. `mmap=True`: the tensors are not read, so a large
    model's checkpoint costs no more than its config here (the task loads it once more to restore)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return state["config"], int(state["step"])


def load_checkpoint_checked(path: Path, model: torch.nn.Module, key: str = "trainer.resume",
                            map_location=None) -> Dict[str, Any]:
    """Load a checkpoint (weights_only) whose model state fits `model`, else one-line ConfigError.

    `key` is the config key the user set to ask for it (e.g. `task.init_from`). Returns the whole
    checkpoint with the model's state already loaded into `model`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(key, str(path), "a checkpoint file that exists") from None
    except Exception as err:  # noqa: BLE001 - an unreadable or foreign file is the user's to fix
        raise ConfigError(key, str(path), f"a checkpoint written by sgdexp ({type(err).__name__}: "
                                          f"{str(err).splitlines()[0] if str(err) else ''})") from None
    theirs = state.get("model") if isinstance(state, dict) else None
    if not isinstance(theirs, Mapping):
        what = ("a task=train run's checkpoint (this one is task=escape's: replicas, no model state)"
                if isinstance(state, dict) and "chunk" in state else "a checkpoint written by sgdexp (it has no model state)")
        raise ConfigError(key, str(path), what)
    ours = model.state_dict()
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        raise ConfigError(key, str(path), f"a checkpoint of the same model: tensors missing there: "
                                          f"{missing[:3] or 'none'}, unknown here: {extra[:3] or 'none'}")
    for name, tensor in ours.items():
        if tuple(theirs[name].shape) != tuple(tensor.shape):
            raise ConfigError(key, str(path), f"a checkpoint of the same model and data shapes: {name} has shape "
                                              f"{tuple(theirs[name].shape)} there, {tuple(tensor.shape)} here")
    model.load_state_dict(theirs)
    return state


class RunDirectory:
    """A run's output directory, owned by one process at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path / LOCK
        self._fd: Optional[int] = None
        self._made_dir = self._made_lock = False
        self.resume_changes: Dict[str, Tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ the lock
    def _lock(self) -> None:
        """flock on a file that stays where it is: after taking it, check that it is still the file at
        `lock_path` (a finishing owner may have just removed it), else take the new one."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._made_dir = True
        for _ in range(10):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                made = True
            except FileExistsError:
                try:
                    fd, made = os.open(self.lock_path, os.O_RDWR), False
                except FileNotFoundError:
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise ConfigError("hydra.run.dir", str(self.path),
                                      "a directory no other run is using: another sgdexp process holds it "
                                      "(wait for it, or choose another directory)") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd, self._made_lock = fd, made
                return
            os.close(fd)
        raise ConfigError("hydra.run.dir", str(self.path), "a directory whose lock file stays put")

    def _release(self, refused: bool) -> None:
        """Unlock; the lock file goes (before unlocking: see `_lock`) unless a refused run found it
        there (a killed run's), which leaves the directory as it was."""
        if self._fd is None:
            return
        if self._made_lock or not refused:
            self.lock_path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the flock
        self._fd = None
        if refused and self._made_dir:
            try:
                self.path.rmdir()  # a run refused before writing anything leaves no directory
            except OSError:
                pass

    # ------------------------------------------------------------------ the checks
    def _check(self, cfg: DictConfig, resume: bool) -> None:
        found = holds_run(self.path)
        if found is None:
            return
        if not resume:
            raise ConfigError("hydra.run.dir", str(self.path),
                              f"a directory without a run: it holds one ({found}); resume it with "
                              f"trainer.resume=true, or choose another directory")
        checkpoint = self.path / LAST
        if checkpoint.exists():
            try:
                config, step = read_checkpoint_config(checkpoint)
                source = "checkpoint"
            except Exception as err:  # noqa: BLE001 - a foreign or damaged file: say so in one line
                raise ConfigError("trainer.resume", True, f"a readable checkpoint at {checkpoint} "
                                                          f"({type(err).__name__})") from None
        else:
            # killed before its first checkpoint, or a run that keeps none (diverged): it starts again
            # from step 0, which rewrites the record, so only with the config that record was made with
            config, step, source = self._recorded_config(found), 0, "run's recorded config"
        self.resume_changes = check_resume(cfg, config, step, source)
        if self.resume_changes and checkpoint.exists():
            with open(self.path / RESUMES, "a") as f:
                f.write(json.dumps({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "changed": {k: list(v) for k, v in self.resume_changes.items()}},
                                   default=str) + "\n")

    def _recorded_config(self, found: str) -> Dict[str, Any]:
        """The config a run without a checkpoint was started with (`.hydra/config.yaml`, written when it
        claimed the directory), for `check_resume`; refused where there is none to compare with."""
        saved = self.path / ".hydra" / "config.yaml"
        try:
            return OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        except Exception as err:  # noqa: BLE001 - missing or unreadable: what ran there is unknown
            reason = "none there" if not saved.exists() else type(err).__name__
            raise ConfigError("trainer.resume", True,
                              f"a run to resume: this directory holds one ({found}) without a checkpoint, and "
                              f"its config ({saved}: {reason}) cannot be compared with this one; choose another "
                              f"directory") from None

    @contextmanager
    def claim(self, cfg: DictConfig, resume: Optional[bool] = None) -> Iterator["RunDirectory"]:
        """Own the directory for the body's duration. `resume`: default `cfg.trainer.resume` or a
        requeued submitit job. Raises ConfigError (directory unchanged) when it may not be used."""
        resume = bool(cfg.trainer.resume) or implicit_resume() if resume is None else resume
        self._lock()
        try:
            self._check(cfg, resume)
            yield self
        except ConfigError:
            # Refused (here, or by the task before it wrote): no lock file left, and no directory
            # left when this claim made it and nothing else was written there.
            self._release(refused=True)
            raise
        finally:
            self._release(refused=False)
