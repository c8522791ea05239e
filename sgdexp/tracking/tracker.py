"""One object the tasks log through: the local store always, W&B when `logger=wandb`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from sgdexp.tracking.store import MetricsStore, jsonable
from sgdexp.tracking.wandb_run import WandbRun


FIGURES = "figures"


class Tracker:
    def __init__(self, cfg: DictConfig, out_dir: Path, group: Optional[str] = None, resume_step: Optional[int] = None):
        self.out_dir = Path(out_dir)
        self.store = MetricsStore(out_dir)
        self.store.open(resume_step)
        self.wandb = None
        if cfg.logger.name == "wandb" and cfg.logger.mode != "disabled":
            config = OmegaConf.to_container(cfg, resolve=True)
            self.wandb = WandbRun(cfg.logger, config, out_dir, group, resume=resume_step is not None)
        self.log_checkpoint = bool(cfg.logger.get("log_checkpoint", False))

    def log(self, row: Dict[str, Any]) -> None:
        self.store.log(row)
        if self.wandb is not None:
            self.wandb.log(jsonable(row), step=row["step"])

    def log_arrays(self, step: int, arrays: Dict[str, Any]) -> None:
        """Per-coordinate values and curves: `arrays.jsonl`, and W&B histograms/line plots."""
        if not arrays:
            return
        self.store.log_arrays(step, arrays)
        if self.wandb is not None:
            self.wandb.log_arrays(arrays, step=step)

    def log_figure(self, name: str, fig, step: Optional[int] = None) -> Path:
        """A matplotlib figure as `figures/<name>.png` in the run directory (slashes become `_`) and,
        with W&B, as an image under `name`. Returns the PNG's path."""
        from sgdexp.plotting import save_figure

        path = save_figure(fig, self.out_dir / FIGURES / f"{name.replace('/', '_')}.png")
        if self.wandb is not None:
            self.wandb.log_image(name, path, step=step)
        return path

    def log_table(self, name: str, columns: Sequence[str], rows: List[Sequence[Any]]) -> None:
        """A table (e.g. one row per escape replica) to W&B; the local copy is the caller's CSV."""
        if self.wandb is not None:
            self.wandb.log_table(name, list(columns), [list(jsonable(r)) for r in rows])

    def finish(self, summary: Dict[str, Any], checkpoint: Optional[Path] = None) -> None:
        """`write_record`, then `finish_wandb`, which runs also when the record cannot be written."""
        try:
            self.write_record(summary)
        finally:  # a full disk must not keep W&B open
            self.finish_wandb(summary, checkpoint)

    def write_record(self, summary: Dict[str, Any]) -> None:
        """The run's record complete on disk: the metric files closed (their last rows written), then
        `summary.json`. Nothing is logged after it; figures may still be drawn."""
        try:
            self.store.close()
        except OSError:  # a full disk: the summary's write below fails too, and says so
            pass
        self.store.write_summary(summary)

    def finish_wandb(self, summary: Dict[str, Any], checkpoint: Optional[Path] = None) -> None:
        """With W&B: upload `checkpoint` (if `logger.log_checkpoint`) and close the run with `summary`."""
        if self.wandb is not None:
            if checkpoint is not None and self.log_checkpoint:
                self.wandb.log_checkpoint(checkpoint)
            self.wandb.finish(jsonable(summary))
