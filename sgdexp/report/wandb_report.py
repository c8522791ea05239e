"""`--wandb`: the report as a W&B Report (wandb-workspaces), built from the runs W&B already holds.

The runs carry the figures (logged as images at the end of each run) and the scalars; the Report
shows the job table as text and line plots of the same keys, filtered to the sweep's group (or the
run's id), and for a sweep with generalization results the Kendall τ table of
`sgdexp.report.generalization` and scatter plots of the loss gap against each measure. Offline,
one line says that it cannot, and how to get there.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

from sgdexp.report.build import headline_keys
from sgdexp.report.generalization import (GAPS, LOSS_GAP, MEASURES, completed_with_gaps, correlation_table,
                                          rank_correlations)
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
    jobs = _markdown(["job", "overrides", "status", *keys],
                     [[run.name, run.label, run.status, *(run.summary.get(k) for k in keys)] for run in runs])
    plotted = [k for k in TRAINING_KEYS + keys if any(r.series(k)[0] for r in runs)]
    panels = [wr.LinePlot(x="Step", y=[k], title=k) for k in dict.fromkeys(plotted)]
    runset = wr.Runset(entity=entity or "", project=project, filters=run_filter)
    blocks = [wr.H1(text="Jobs"), wr.MarkdownBlock(text=jobs), wr.PanelGrid(runsets=[runset], panels=panels)]
    if kind == "sweep" and completed_with_gaps(runs):
        # the gap against each measure over the runs' summaries (B/η is the config's two keys, which
        # a W&B scatter cannot divide: it is in the table)
        scatter = [wr.ScatterPlot(title=f"{GAPS[LOSS_GAP]} against {name}", x=wr.SummaryMetric(key),
                                  y=wr.SummaryMetric(LOSS_GAP))
                   for key, name in MEASURES.items() if any(isinstance(r.summary.get(key), (int, float)) for r in runs)]
        blocks += [wr.H1(text="Generalization across the sweep"),
                   wr.MarkdownBlock(text=_markdown(*correlation_table(rank_correlations(runs)))),
                   wr.PanelGrid(runsets=[runset], panels=scatter)]
    kwargs = {"entity": entity} if entity else {}
    return wr.Report(project=project, title=f"sgdexp: {Path(path).resolve().name}"[:128],
                     description=f"python -m sgdexp.report {path}", **kwargs, blocks=blocks)


def _markdown(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (floats to 4 significant digits, None as blank)."""
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v if v is not None else "")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


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
