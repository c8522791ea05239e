"""Weights & Biases, kept from ever killing a run: the first failure warns once and turns it off."""
from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig

from sgdexp.errors import shown_arguments

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id"


def job_overrides(out_dir: Path) -> List[str]:
    """The overrides a job was started with (Hydra's `.hydra/overrides.yaml`; empty from the Python API)."""
    path = Path(out_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def run_identity(config: Dict[str, Any], out_dir: Path, tags: Sequence[str] = ()) -> Dict[str, Any]:
    """W&B `name`, `job_type` and `tags` that find a run again: the name from its overrides (W&B's
    `group` is the sweep), the task as job type, tags for the noise mode, model and dataset."""
    overrides = [o for o in job_overrides(out_dir) if not o.startswith(("hydra.", "hydra/"))]
    name = " ".join(overrides) or "default"
    found = [f"{group}:{config[group]['name']}" for group in ("noise", "model", "dataset")
             if isinstance(config.get(group), dict) and "name" in config[group]]
    # W&B caps names at 128 characters and tags at 64
    return {"name": name[:128], "job_type": str(config.get("task", {}).get("name", "train")),
            "tags": [t[:64] for t in [*tags, *found]]}


class WandbRun:
    def __init__(self, cfg: DictConfig, config: Dict[str, Any], out_dir: Path, group: Optional[str], resume: bool):
        self.run = None
        self._call("init", self._init, cfg, config, Path(out_dir), group, resume)

    def _init(self, cfg, config, out_dir, group, resume):
        import wandb

        # A resumed job continues the same W&B run: its id is kept beside the checkpoint.
        id_file = out_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        # W&B records the command line in its run file (and uploads it on sync): a key passed as
        # +hydra.job.env_set.WANDB_API_KEY=... must not ride along, so it sees the line with it hidden
        argv = sys.argv
        sys.argv = shown_arguments(argv)
        try:
            self.run = wandb.init(
                project=cfg.project, entity=cfg.entity, group=group, mode=cfg.mode,
                **run_identity(config, out_dir, list(cfg.tags)),
                config=config, dir=str(out_dir), id=run_id, resume="allow", reinit="finish_previous",
                settings=wandb.Settings(quiet=True),
            )
        finally:
            sys.argv = argv

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - W&B must never take a run down with it
            log.warning("W&B %s failed (%s: %s); going on with the local store only", what, type(err).__name__, err)
            self.run = None

    def log(self, row: Dict[str, Any], step: int) -> None:
        if self.run is not None:
            self._call("log", self.run.log, {k: v for k, v in row.items() if k != "step"}, step=step)

    def log_arrays(self, arrays: Dict[str, Any], step: int) -> None:
        """Curves (names ending in `autocorrelation`) as line plots over the lag, the rest as histograms."""
        if self.run is None:
            return

        def convert():
            import numpy as np
            import wandb

            out = {}
            for name, values in arrays.items():
                values = np.asarray(values, dtype=float)
                if name.endswith("autocorrelation"):
                    table = wandb.Table(data=[[i, v] for i, v in enumerate(values)], columns=["lag", "value"])
                    out[name] = wandb.plot.line(table, "lag", "value", title=f"{name} (step {step})")
                elif np.isfinite(values).any():
                    out[name] = wandb.Histogram(values[np.isfinite(values)])
            self.run.log(out, step=step)

        self._call("log", convert)

    def log_image(self, name: str, path: Path, step: Optional[int] = None) -> None:
        if self.run is None:
            return

        def log_it():
            import wandb

            self.run.log({name: wandb.Image(str(path))}, **({} if step is None else {"step": step}))

        self._call("log", log_it)

    def log_table(self, name: str, columns, rows) -> None:
        if self.run is None:
            return

        def log_it():
            import wandb

            self.run.log({name: wandb.Table(columns=columns, data=rows)})

        self._call("log", log_it)

    def log_checkpoint(self, path: Path) -> None:
        if self.run is None or not path.exists():
            return

        def upload():
            import wandb

            artifact = wandb.Artifact(f"checkpoint-{self.run.id}", type="model")
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)

        self._call("log_artifact", upload)

    def finish(self, summary: Dict[str, Any]) -> None:
        if self.run is None:
            return

        def close():
            self.run.summary.update(summary)
            self.run.finish(exit_code=0 if summary.get("status") != "failed" else 1)

        self._call("finish", close)
        self.run = None
