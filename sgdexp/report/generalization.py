"""A sweep's generalization: what its noise and hyperparameters did to the gap, beside sharpness.

Keskar et al. (2017) and Xie et al. (DDT) tie large-batch, small-learning-rate training (a large
B/η) to sharp minima, and sharp minima to a larger generalization gap; Jiang et al. (2020,
"Fantastic generalization measures") rate a measure by how well it orders a sweep's runs by their
gap: Kendall's rank correlation τ over the runs. For the completed jobs of a sweep that ran
`analysis=[generalization]` (its keys in each summary.json):

- `rank_correlations`: Kendall's τ_b (scipy) of each measure with each gap over the jobs that have
  both, its two-sided p-value and the number of jobs; and of B/η with the top eigenvalue (is a
  larger B/η sharper?). The measures: B/η (each job's `noise.batch_size / optimizer.lr`, where the
  sweep varies it), the top Hessian eigenvalue and the trace at the end, the distance from
  initialisation and the weight norm. A pair is left out where fewer than 3 jobs have both values
  or either takes a single value (τ is undefined);
- `generalization_figure`: the loss gap against each measure (and the top eigenvalue against B/η),
  one point per job, one colour per setting (jobs that differ only by seed share it).

The report (`sgdexp.report.build`) adds the gaps and measures per setting, mean ± sd over seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from sgdexp.report.figures import MAX_LINES, figure_legend, group_colours, group_of, panel_grid
from sgdexp.report.loading import Run, group_by_values, swept_keys

BATCH_OVER_LR = "B/η"
# summary keys: the gaps, then the measures, as the report's table shows them
LOSS_GAP, ACCURACY_GAP = "generalization/loss_gap", "generalization/accuracy_gap"
GAPS = {LOSS_GAP: "loss gap (test − train)", ACCURACY_GAP: "accuracy gap (train − test)"}
MEASURES = {BATCH_OVER_LR: "B/η",
            "generalization/top_eigenvalue": "top Hessian eigenvalue",
            "generalization/trace": "Hessian trace",
            "generalization/distance_from_init": "distance from init ‖θ − θ₀‖",
            "generalization/weight_norm": "weight norm ‖θ‖"}
NAMES = {**GAPS, **MEASURES}
TABLE_KEYS = ["generalization/test_accuracy", *GAPS, *list(MEASURES)[1:]]
MIN_JOBS = 3  # τ over two jobs is ±1 whatever they are


def job_values(run: Run) -> Dict[str, float]:
    """The gaps and measures of one job (NaN where it has none); B/η from its config."""
    from sgdexp.escape_sweeps import as_float, batch_over_lr

    values = {key: as_float(run.summary.get(key)) for key in [*GAPS, *MEASURES] if key != BATCH_OVER_LR}
    values[BATCH_OVER_LR] = batch_over_lr(run.config) if run.config is not None else math.nan
    return values


def completed_with_gaps(runs: Sequence[Run]) -> List[Run]:
    """The completed jobs that logged a generalization gap."""
    return [r for r in runs if r.status == "completed" and isinstance(r.summary.get(LOSS_GAP), (int, float))
            and math.isfinite(r.summary[LOSS_GAP])]


def _pairs() -> List[Tuple[str, str]]:
    """(x, y): each measure against each gap, then the top eigenvalue against B/η."""
    return [(x, y) for x in MEASURES for y in GAPS] + [(BATCH_OVER_LR, "generalization/top_eigenvalue")]


def _usable(x: np.ndarray, y: np.ndarray, least: int = MIN_JOBS) -> np.ndarray:
    """The jobs where both are finite, or an empty mask when τ would be undefined there."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < least or len(np.unique(x[ok])) < 2 or len(np.unique(y[ok])) < 2:
        return np.zeros_like(ok)
    return ok


@dataclass
class RankCorrelation:
    """Kendall's τ_b of `y` with `x` over the `jobs` completed jobs that have both (`p`: two-sided
    p-value); `within`: swept key -> (granulated τ, groups): the mean τ over the groups of jobs that
    differ only in that key (Jiang et al.'s granulated Kendall coefficient: what varying that
    hyperparameter alone does, with the others and the seed held fixed)."""

    x: str
    y: str
    tau: float
    p: float
    jobs: int
    within: Dict[str, Tuple[float, int]] = field(default_factory=dict)


def _granulated(groups: Dict[str, List[int]], x: np.ndarray, y: np.ndarray) -> Optional[Tuple[float, int]]:
    """(mean τ, groups) over the `groups` of jobs (indices into x and y) with two or more jobs whose
    x and y differ; None when no group has a τ."""
    from scipy.stats import kendalltau

    taus = []
    for members in groups.values():
        ok = _usable(x[members], y[members], least=2)
        if ok.any():
            taus.append(float(kendalltau(x[members][ok], y[members][ok]).statistic))
    taus = [t for t in taus if math.isfinite(t)]
    return (float(np.mean(taus)), len(taus)) if taus else None


def rank_correlations(runs: Sequence[Run]) -> List[RankCorrelation]:
    """Kendall's τ of each pair of `_pairs` that the completed jobs allow, over all of them and
    within each swept key but the seed (see the module docstring and `RankCorrelation`)."""
    from scipy.stats import kendalltau

    done = completed_with_gaps(runs)
    swept = swept_keys(done)
    # per swept key, the jobs that differ only in it (the other keys and the seed fixed)
    apart = {key: group_by_values([r.override_values for r in done], [k for k in swept if k != key])
             for key in swept if key != "seed"}
    jobs = [job_values(r) for r in done]
    rows = []
    for x_key, y_key in _pairs():
        x = np.array([j[x_key] for j in jobs], dtype=float)
        y = np.array([j[y_key] for j in jobs], dtype=float)
        ok = _usable(x, y)
        if not ok.any():
            continue
        result = kendalltau(x[ok], y[ok])
        row = RankCorrelation(x_key, y_key, float(result.statistic), float(result.pvalue), int(ok.sum()))
        for key, groups in apart.items():
            if (within := _granulated(groups, x, y)) is not None:
                row.within[key] = within
        rows.append(row)
    return rows


def correlation_table(taus: Sequence[RankCorrelation]) -> Tuple[List[str], List[list]]:
    """(columns, rows) of `rank_correlations` for the report and the W&B Report: x, y, τ, p-value,
    jobs, then `+0.25 (4)` (granulated τ, groups) for each swept key."""
    within = list(dict.fromkeys(k for r in taus for k in r.within))
    columns = ["x", "y", "Kendall τ", "p-value", "jobs", *[f"τ within {k} (groups)" for k in within]]
    rows = [[NAMES[r.x], NAMES[r.y], r.tau, r.p, r.jobs,
             *[f"{r.within[k][0]:+.2f} ({r.within[k][1]})" if k in r.within else "" for k in within]] for r in taus]
    return columns, rows


def generalization_figure(runs: Sequence[Run], taus: Sequence[RankCorrelation]) -> Optional[Figure]:
    """The loss gap against each measure with a τ in `taus` (`rank_correlations(runs)`), and the top
    eigenvalue against B/η: one point per completed job, one colour per setting, Kendall's τ in each
    panel's title; None when no pair has a τ."""
    done = completed_with_gaps(runs)
    by_pair = {(r.x, r.y): r for r in taus}
    shown = [(x, y) for x, y in _pairs() if (x, y) in by_pair and y != ACCURACY_GAP]
    if not shown:
        return None
    colours = group_colours(done)
    legend = len(colours) <= MAX_LINES and len(done) > 1
    fig, axes = panel_grid(len(shown))
    points = [(job_values(r), group_of(r, done)) for r in done]
    for ax, (x_key, y_key) in zip(axes, shown):
        seen: set = set()
        for v, group in points:
            if math.isfinite(v[x_key]) and math.isfinite(v[y_key]):
                ax.plot(v[x_key], v[y_key], "o", ms=5, color=colours[group],
                        label=group if legend and group not in seen else None)
                seen.add(group)
        if x_key == BATCH_OVER_LR:
            ax.set_xscale("log")
        r = by_pair[(x_key, y_key)]
        ax.set_title(f"Kendall τ = {r.tau:+.2f} (p = {r.p:.2g}, {r.jobs} jobs)", fontsize=9)
        ax.set(xlabel=MEASURES[x_key], ylabel=NAMES[y_key])
    figure_legend(fig, axes)
    against = "sharpness and B/η" if any(BATCH_OVER_LR in pair for pair in shown) else "sharpness"
    fig.suptitle(f"Generalization against {against} across the sweep")
    return fig
