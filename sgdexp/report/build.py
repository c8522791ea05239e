"""`build_report(path)`: figures and `report.html` for a run or a multirun directory."""
from __future__ import annotations

import logging
import math
import re
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sgdexp.report import html as H
from sgdexp.report.figures import panels, run_figures
from sgdexp.report.loading import Run, find_runs, planned_jobs, swept_keys

log = logging.getLogger(__name__)

REPORT = "report.html"
FIGURES = "figures"
FINAL_METRICS = ["train/loss", "test/loss", "test/accuracy", "gap/accuracy"]
SECTIONS = ("noise/", "noise_stats/", "noise_memory/", "diffusion/", "curvature/", "escape/")
MAX_SECTION_COLUMNS = 8
OK = ("completed",)


def headline_keys(runs: Sequence[Run]) -> List[str]:
    """Final metrics every job table shows: the training ones, then each section's top-level summary keys."""
    keys = [k for k in FINAL_METRICS if any(isinstance(r.summary.get(k), (int, float)) for r in runs)]
    extra = sorted({k for r in runs for k, v in r.summary.items() if isinstance(v, (int, float))
                    and not isinstance(v, bool) and k.startswith(SECTIONS)
                    and "/" not in k.split("/", 1)[1] and not k.endswith("_se")})
    return keys + extra[:MAX_SECTION_COLUMNS]


def job_rows(runs: Sequence[Run], keys: Sequence[str], base: Path):
    rows, bad = [], []
    swept = swept_keys(runs)
    for run in runs:
        evaluated = run.summary.get("evaluated_step", run.summary.get("step"))
        note = run.summary.get("error") or (f"diverged at step {run.summary['diverged_step']}"
                                             + (f", evaluated at step {evaluated}"
                                                if evaluated != run.summary["diverged_step"] else "")
                                             if "diverged_step" in run.summary else
                                             f"reached {run.stop_rule} at step {run.summary['stopped_at_step']}"
                                             if run.stop_rule else "")
        name = H.link(run.path / "summary.json", base, run.name) if (run.path / "summary.json").exists() \
            else H.link(run.path, base, run.name)
        varied = " ".join(o for o in run.overrides if o.split("=", 1)[0] in swept) or run.label
        rows.append([name, varied, run.status, note, run.summary.get("step", ""),
                     *[run.summary.get(k) for k in keys]])
        bad.append(run.status not in OK)
    return rows, bad


def mean_sd(values: List[float]) -> str:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def seed_rows(runs: Sequence[Run], keys: Sequence[str]):
    """Mean ± sd over the completed jobs of each group that differ only by seed."""
    groups: Dict[str, List[Run]] = {}
    swept = swept_keys(runs)
    for run in runs:
        groups.setdefault(run.group_label(swept), []).append(run)
    rows = []
    for label, members in groups.items():
        done = [r for r in members if r.status in OK]
        rows.append([label, f"{len(done)}/{len(members)}", *[mean_sd([r.summary.get(k) for r in done]) for k in keys]])
    return rows


def sweep_fits_section(path: Path, fig_dir: Path) -> Optional[str]:
    """The sweep-level fits of ln(mean escape steps) against B/η, 1/σ², 1/sharpness, H and α
    (`sgdexp.escape_sweeps.sweep_fits`): their figure and table, and the jobs left out of them;
    None for a sweep without escape results."""
    from sgdexp.escape_sweeps import fit_table, fits_figure, sweep_fits
    from sgdexp.plotting import save_figure

    sweep = sweep_fits(path)
    if not sweep.jobs and not sweep.lower_bounds:
        return None
    columns, rows = fit_table(sweep)
    if rows:
        html = H.image(save_figure(fits_figure(sweep), fig_dir / "escape_fits.png")) + H.table(columns, rows, left=1)
    else:  # no figure: it would hold only this sentence
        html = "<p>No x took 3 or more distinct values.</p>\n"
    if sweep.excluded:
        html += H.table(["left out", "why"], [[job, why] for job, why in sweep.excluded.items()], left=2)
    return html


def generalization_section(runs: Sequence[Run], fig_dir: Path) -> Optional[str]:
    """The gaps and measures of `sgdexp.report.generalization` per setting (mean ± sd over seeds),
    Kendall's τ of each measure with each gap across the jobs, and the figure of the gap against
    them; None for a sweep without generalization results."""
    from sgdexp.plotting import save_figure
    from sgdexp.report.generalization import (NAMES, TABLE_KEYS, completed_with_gaps, correlation_table,
                                              generalization_figure, rank_correlations)

    done = completed_with_gaps(runs)
    if not done:
        return None
    keys = [k for k in TABLE_KEYS if any(isinstance(r.summary.get(k), (int, float)) for r in runs)]
    html = H.table(["setting", "completed", *[NAMES.get(k, k.split("/", 1)[1]) for k in keys]],
                   seed_rows(runs, keys), left=2)
    short = [r.name for r in done if r.stop_rule is None]
    if len(short) < len(done) and short:  # a stopping rule (trainer.stop_at_*): the jobs that never reached it
        rules = sorted({r.stop_rule for r in done if r.stop_rule})
        html += (f"<p>Not at equal fit: jobs {H.esc(', '.join(short))} ran all their steps without reaching "
                 f"{' or '.join(rules)}, so their gaps are at another fit than the others'.</p>\n")
    taus = rank_correlations(runs)
    columns, rows = correlation_table(taus)
    html += (H.table(columns, rows, left=2) if rows else
             "<p>No Kendall τ: it needs 3 or more completed jobs whose values differ.</p>\n")
    fig = generalization_figure(runs, taus)
    if fig is not None:
        html = H.image(save_figure(fig, fig_dir / "generalization_vs_sharpness.png")) + html
    return html


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")


def figure_files(runs: Sequence[Run], fig_dir: Path) -> Dict[str, List[Tuple[str, Path]]]:
    """Draw and save every figure (`run_figures`) of a run or a sweep: figure name -> [(panel, PNG)],
    one panel ("") unless the sweep has more than MAX_LINES groups of jobs, then one figure per panel
    of `panels` (`msd__noise.name=sgd.png`). The report's figure manifest."""
    from sgdexp.plotting import save_figure

    files: Dict[str, List[Tuple[str, Path]]] = {}
    for panel, members in panels(runs):
        for name, fig in run_figures(members).items():
            if panel:
                fig.suptitle(f"{fig.get_suptitle()}: {panel}" if fig.get_suptitle() else panel)
            png = save_figure(fig, fig_dir / (f"{name}__{_slug(panel)}.png" if panel else f"{name}.png"))
            files.setdefault(name, []).append((panel, png))
    return files


def build_report(path: Path, out_dir: Optional[Path] = None) -> Path:
    """Write `figures/*.png` and `report.html` into `out_dir` (default: `path`); return the HTML's path."""
    path = Path(path).resolve()
    kind, runs = find_runs(path)
    out_dir = Path(out_dir).resolve() if out_dir else path
    fig_dir = out_dir / FIGURES if kind == "sweep" else out_dir / "report_figures"
    # A run's own figures/ are the ones its Tracker logged to W&B; the report's go beside them.
    figures = figure_files(runs, fig_dir)
    keys = headline_keys(runs)
    sections = []
    if kind == "sweep":
        swept = swept_keys(runs)
        counts: Dict[str, int] = {}
        for r in runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        intro = (f"Multirun <code>{H.esc(path)}</code>: {len(runs)} job{'' if len(runs) == 1 else 's'} ("
                 + ", ".join(f"{n} {s}" for s, n in counts.items()) + "); swept: "
                 + H.esc(", ".join(swept) or "nothing") + ".")
        planned = planned_jobs(path)
        if planned is not None and planned > len(runs):  # refused jobs leave no directory; others have not run
            missing = planned - len(runs)
            intro += (f" Its multirun.yaml asked for {planned} jobs: {missing} {'has' if missing == 1 else 'have'} "
                      f"no directory here (refused before they wrote anything, or not run).")
        common = [o for o in runs[0].overrides if all(o in r.overrides for r in runs)]
        if common:
            intro += f" Every job: <code>{H.esc(' '.join(common))}</code>."
        rows, bad = job_rows(runs, keys, out_dir)
        sections.append(("Jobs", H.table(["job", "overrides", "status", "note", "step", *keys], rows, left=4, bad=bad)))
        if "seed" in swept:
            sections.append(("Mean ± sd over seeds (completed jobs)",
                             H.table(["group", "completed", *keys], seed_rows(runs, keys), left=2)))
        fits = sweep_fits_section(path, fig_dir)
        if fits:
            sections.append(("Escape: sweep-level fits", fits))
        generalization = generalization_section(runs, fig_dir)
        if generalization:
            sections.append(("Generalization across the sweep", generalization))
    else:
        run = runs[0]
        intro = f"Run <code>{H.esc(path)}</code> ({H.esc(run.label)}): <b>{H.esc(run.status)}</b>."
        shown = {k: run.summary.get(k) for k in ["status", "step", *keys, "wall_time_s", "error", "diverged_step"]
                 if k in run.summary}
        shown.update((k, v) for k, v in sorted(run.summary.items()) if k.startswith("generalization/"))
        sections.append(("Summary", H.key_values(shown)))
    for name, files in figures.items():
        body = "".join((f"<h3>{H.esc(panel)}</h3>\n" if panel else "") + H.image(png) for panel, png in files)
        sections.append((name.replace("_", " ").capitalize(), body))
    report = out_dir / REPORT
    report.write_text(H.page(f"sgdexp report: {path.name}", sections, intro))
    return report
