"""Reports of finished runs: `python -m sgdexp.report PATH` (a run or a multirun directory) writes PNG
figures and one self-contained `report.html`; `--wandb` publishes the same as a W&B Report.

Reads only the run directories (metrics.jsonl, arrays.jsonl, summary.json, escape.csv,
.hydra/overrides.yaml), so it works offline and without W&B. Each section appears where its data exist.
"""
from sgdexp.report.build import build_report
from sgdexp.report.figures import run_figures
from sgdexp.report.loading import Run, find_runs, load_run

__all__ = ["build_report", "run_figures", "Run", "find_runs", "load_run"]
