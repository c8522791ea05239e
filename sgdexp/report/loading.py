"""Finished runs as plain data: what a report reads from a run or a multirun directory.

A run directory holds `summary.json`, `metrics.jsonl`, `arrays.jsonl` (sgdexp.tracking), Hydra's
`.hydra/overrides.yaml` and, for escape runs, `escape.csv`. Everything is optional: a job that died
before writing anything is still a job (status `failed`), so a report lists it instead of dropping it.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sgdexp.tracking.store import ARRAYS, METRICS, SUMMARY, read_metrics

ESCAPE_CSV = "escape.csv"  # replica, escaped, step, loss, distance (written by task=escape)


@dataclass
class Run:
    path: Path
    overrides: List[str] = field(default_factory=list)
    summary: Dict[str, Any] = field(default_factory=dict)
    metrics: List[Dict[str, Any]] = field(default_factory=list)
    arrays: List[Dict[str, Any]] = field(default_factory=list)
    escape: List[Dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """completed | diverged | failed | interrupted from summary.json; `running or killed` when
        metrics exist without a summary; `failed` when the job left nothing."""
        if "status" in self.summary:
            return str(self.summary["status"])
        return "running or killed" if self.metrics else "failed"

    @cached_property
    def config(self) -> Optional[Any]:
        """The job's composed config (`.hydra/config.yaml`, an OmegaConf node), None without one."""
        from omegaconf import OmegaConf

        path = self.path / ".hydra" / "config.yaml"
        return OmegaConf.load(path) if path.is_file() else None

    def config_value(self, key: str) -> Any:
        """`key` of the job's config (`noise.name`), None where it has no config or no such key."""
        from omegaconf import OmegaConf

        return OmegaConf.select(self.config, key, default=None) if self.config is not None else None

    @property
    def override_values(self) -> Dict[str, str]:
        """Its overrides as key -> value (`noise.batch_size` -> `32`)."""
        return dict(o.split("=", 1) for o in self.overrides if "=" in o)

    @property
    def stop_rule(self) -> Optional[str]:
        """The stopping rule that ended the job early (`trainer.stop_at_train_loss` or
        `trainer.stop_at_train_accuracy`), None when it ran all its steps. Summaries written before
        the accuracy rule existed have no `stopped_by`: theirs was the loss rule."""
        if "stopped_at_step" not in self.summary:
            return None
        return self.summary.get("stopped_by", "trainer.stop_at_train_loss")

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "default"

    def group_label(self, swept: Optional[List[str]] = None) -> str:
        """The overrides without `seed=` (only the `swept` keys, when given): jobs that differ only by
        seed share it, and a sweep's legend shows what it varied."""
        kept = [o for o in self.overrides if o.split("=", 1)[0] != "seed"
                and (swept is None or o.split("=", 1)[0] in swept)]
        return " ".join(kept) or "default"

    def series(self, key: str):
        """(steps, values) of a scalar over the run's logged steps, non-finite values left out."""
        pts = [(r["step"], r[key]) for r in self.metrics
               if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    def last_arrays(self, prefix: str) -> Dict[str, List[float]]:
        """The latest value of each array under `prefix` (an analysis logs an array again only
        when it changed: analysis=[diffusion] logs a waiting time's curve when it gained points)."""
        found: Dict[str, List[float]] = {}
        for row in self.arrays:
            found.update((k, v) for k, v in row.items() if k.startswith(prefix) and isinstance(v, list))
        return found

    def scalar_keys(self, prefix: str = "") -> List[str]:
        keys = {k for r in self.metrics for k in r if k.startswith(prefix) and k != "step"}
        return sorted(keys)

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.summary) or bool(self.scalar_keys(prefix)) or bool(
            self.last_arrays(prefix))


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_overrides(path: Path) -> List[str]:
    """A job's command-line overrides (`.hydra/overrides.yaml`, read by the tracker's own reader), less
    Hydra's own (`hydra.sweep.dir=...`): what a report and the sweep fits tell jobs apart by."""
    from sgdexp.tracking.wandb_run import job_overrides

    return [o for o in job_overrides(path) if not o.startswith(("hydra.", "hydra/"))]


def read_escape_csv(path: Path) -> List[Dict[str, float]]:
    """Rows of `escape.csv` as floats (escaped as 0/1); an absent or torn file gives what it has."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(v in ("True", "true", "1", "1.0")) if k == "escaped" else float(v)
                             for k, v in row.items()})
            except (TypeError, ValueError):
                continue
    return rows


def load_run(path: Path) -> Run:
    path = Path(path)
    return Run(
        path=path,
        overrides=read_overrides(path),
        summary=_read_json(path / SUMMARY),
        metrics=read_metrics(path / METRICS) if (path / METRICS).is_file() else [],
        arrays=read_metrics(path / ARRAYS) if (path / ARRAYS).is_file() else [],
        escape=read_escape_csv(path / ESCAPE_CSV),
    )


def is_run_dir(path: Path) -> bool:
    return any((Path(path) / name).exists() for name in (SUMMARY, METRICS, ".hydra"))


def job_dirs(root: Path) -> List[Path]:
    """The job directories of a multirun directory, at any depth (a sweep of sweeps too), in job-number
    order: every run directory under `root` that is not inside another one (an escape job's
    `pretrain/` belongs to its job). The one reader of multirun directories (reports, sweep fits)."""
    root = Path(root)
    found: List[Path] = []

    def walk(d: Path) -> None:
        for p in sorted(q for q in d.iterdir() if q.is_dir()):
            if is_run_dir(p):
                found.append(p)
            elif not p.name.startswith("."):
                walk(p)

    walk(root)

    def key(p: Path):
        return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.relative_to(root).parts)

    return sorted(found, key=key)


def find_runs(path: Path) -> tuple[str, List[Run]]:
    """("run", [run]) for a run directory, ("sweep", jobs in job-number order) for a multirun one."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    jobs = job_dirs(path) if not (path / SUMMARY).exists() else []
    if jobs:
        return "sweep", [load_run(p) for p in jobs]
    if is_run_dir(path):
        return "run", [load_run(path)]
    raise FileNotFoundError(f"{path} holds no run (summary.json, metrics.jsonl) and no multirun jobs")


def planned_jobs(sweep_dir: Path) -> Optional[int]:
    """How many jobs the sweep's `multirun.yaml` asked for: the product of the numbers of values of its
    swept keys (the command line's over `hydra.sweeper.params`', as Hydra's basic sweeper takes them);
    None where there is no such file or a sweep it cannot count (an interval for an optimizing sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        args = {k: f"{k}={v}" for k, v in params.items()}
        args.update({a.split("=", 1)[0]: a for a in OmegaConf.select(cfg, "hydra.overrides.task") or []})
        total = 1
        for override in OverridesParser.create().parse_overrides(list(args.values())):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # noqa: BLE001 - absent, unreadable or not countable: the report says nothing of it
        return None


def swept_keys(runs: List[Run]) -> List[str]:
    """The override keys whose value differs between jobs (what the sweep varied), in override order."""
    parsed = [run.override_values for run in runs]
    order: List[str] = []
    for p in parsed:
        order += [k for k in p if k not in order]
    return [k for k in order if len({p[k] for p in parsed if k in p}) > 1]


def group_by_values(values: Sequence[Dict[str, str]], keys: Sequence[str]) -> Dict[str, List[int]]:
    """The indices of the items (each a key -> value dict) that share their values of `keys`, by a
    label `k=v k=v` (an absent key counts as the value None): the jobs that differ only outside `keys`."""
    groups: Dict[str, List[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(" ".join(f"{k}={v.get(k)}" for k in keys), []).append(i)
    return groups
