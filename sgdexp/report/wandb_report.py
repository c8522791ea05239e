"""`--wandb`: the report as a W&B Report (wandb-workspaces), built from the runs W&B already holds.

The runs carry the figures (logged as images at the end of each run) and the scalars; the Report
shows the job table as text and line plots of the same keys, filtered to the sweep's group (or the
run's id). Offline, one line says that it cannot, and how to get there.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Optional, Tuple

from sgdexp.report.build import headline_keys
from sgdexp.report.loading import Run, find_runs

TRAINING_KEYS = ["train/loss", "test/loss", "test/accuracy", "train/batch_loss"]


def offline_reason() -> Optional[str]:
    """Why nothing can be published now, or None when W&B looks reachable (mode online and a key)."""
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    if os.environ.get("WANDB_API_KEY"):
        return None
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "no W&B API key (wandb login, or WANDB_API_KEY)"


def _project(run: Run) -> Tuple[str, Optional[str]]:
    from omegaconf import OmegaConf

    config = run.path / ".hydra" / "config.yaml"
    logger = OmegaConf.load(config).get("logger", {}) if config.is_file() else {}
    return str(logger.get("project", "sgdexp")), logger.get("entity")


def report_spec(path: Path):
    """The wandb_workspaces Report for `path` (not saved): title, job table, line plots."""
    import wandb_workspaces.reports.v2 as wr

    kind, runs = find_runs(Path(path))
    project, entity = _project(runs[0])
    if kind == "sweep":
        run_filter = f"Group = '{Path(path).resolve().name}'"
    else:
        id_file = runs[0].path / "wandb_run_id"
        run_filter = f"ID = '{id_file.read_text().strip()}'" if id_file.is_file() else ""
    keys = headline_keys(runs)
    lines = ["| job | overrides | status | " + " | ".join(keys) + " |", "|" + "---|" * (3 + len(keys))]
    for run in runs:
        values = [f"{v:.4g}" if isinstance(v, float) else str(v if v is not None else "")
                  for v in (run.summary.get(k) for k in keys)]
        lines.append(f"| {run.name} | {run.label} | {run.status} | " + " | ".join(values) + " |")
    plotted = [k for k in TRAINING_KEYS + keys if any(r.series(k)[0] for r in runs)]
    panels = [wr.LinePlot(x="Step", y=[k], title=k) for k in dict.fromkeys(plotted)]
    runset = wr.Runset(entity=entity or "", project=project, filters=run_filter)
    kwargs = {"entity": entity} if entity else {}
    return wr.Report(project=project, title=f"sgdexp: {Path(path).resolve().name}"[:128],
                     description=f"python -m sgdexp.report {path}", **kwargs,
                     blocks=[wr.H1(text="Jobs"), wr.MarkdownBlock(text="\n".join(lines)),
                             wr.PanelGrid(runsets=[runset], panels=panels)])


def publish(path: Path) -> str:
    """Save the W&B Report when online; one line either way (its URL, or why it cannot)."""
    reason = offline_reason()
    if reason:
        return (f"sgdexp.report: cannot publish a W&B Report offline ({reason}); upload the runs with "
                f"`wandb sync <run>/wandb/offline-run-*`, then rerun with --wandb online")
    try:
        report = report_spec(path)
        report.save()
        return f"W&B report: {report.url}"
    except Exception as err:  # noqa: BLE001 - publishing is an extra; the HTML report is already written
        return f"sgdexp.report: could not publish the W&B Report ({type(err).__name__}: {err})"
