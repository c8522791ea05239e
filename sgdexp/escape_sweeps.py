"""Escape experiments across a sweep: log mean escape time against the knob each paper varies.

Xie et al.: log(mean escape time) is linear in B/η and in 1/sharpness for SGD, and in 1/σ² for GD
plus white noise (Kramers); Tan et al.: it depends on the Hurst exponent H of fBm noise; heavy-tailed
noise (Lévy, α < 2) changes the law. `sweep_fits` reads the jobs of a Hydra multirun directory
(`task=escape` runs: each job directory holds `summary.json` and `.hydra/config.yaml`) and fits a
line to y = ln(summary `escape/mean_steps`) against each of

  * `batch_over_lr`     = noise.batch_size / optimizer.lr
  * `inverse_sigma_sq`  = 1/σ², σ = noise.sigma, or the σ the run matched (summary `noise/sigma` or
                          `escape/sigma`) when noise.sigma=matched
  * `inverse_sharpness` = 1 / summary `sharpness/top_eigenvalue`
  * `hurst`             = noise.hurst
  * `alpha`             = noise.alpha

for every x that takes at least 3 distinct values across the jobs used, one line per group of jobs
that share everything else the sweep varies: the swept keys (`.hydra/overrides.yaml`) that do not
make x, so a sweep over noise modes and minima gives ln τ against B/η per mode and minimum, and
against 1/sharpness per mode and B (B and η make 1/σ² only under noise.sigma=matched: with σ set by
hand, each η has its own line). A job that did not complete,
has no summary, or only gives a lower bound (`escape/lower_bound: 1`, no replica escaped) is left
out of the fits and listed with the reason. `survival_figure` and `fits_figure` draw the Kaplan-Meier
curves of runs and the fits of a sweep (for the escape task and the report).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from sgdexp.plotting import new_figure
from sgdexp.stats.fits import LineFit, line_fit
from sgdexp.stats.survival import KaplanMeier

SUMMARY = "summary.json"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
MIN_DISTINCT = 3  # a line through two points has no R² worth reporting
# the swept keys that make each x: jobs that differ only in these are points of one line
X_SOURCES = {
    "batch_over_lr": {"noise.batch_size", "optimizer.lr"},
    "inverse_sigma_sq": {"noise.sigma", "noise.batch_size", "optimizer.lr"},
    "inverse_sharpness": {"task.pretrain_lr", "task.pretrain_steps", "task.init_from", "seed", "model",
                          "landscape", "landscape.barrier", "landscape.transverse", "landscape.dim"},
    "hurst": {"noise.hurst", "part"},
    "alpha": {"noise.alpha", "part"},
}
X_LABELS = {
    "batch_over_lr": "B / η",
    "inverse_sigma_sq": "1 / σ²",
    "inverse_sharpness": "1 / λ_max",
    "hurst": "Hurst exponent H",
    "alpha": "tail index α",
}


@dataclass
class EscapeJob:
    """One job of the sweep: its directory, its x values (NaN where the config has none), and
    ln of the mean escape time with its interval (NaN when not measured)."""

    job: str
    x: Dict[str, float]
    log_mean: float
    log_low: float
    log_high: float
    lower_bound: bool
    swept: Dict[str, str] = field(default_factory=dict)  # its command-line overrides, key -> value
    sigma_matched: bool = False  # noise.sigma=matched: σ follows B and η (which then make 1/σ²)


@dataclass
class SweepFits:
    """`fits`: fit name -> LineFit of ln(mean escape steps), the name the x (`batch_over_lr`) or, when
    the sweep varies more than x, `x | group` (`batch_over_lr | noise=sgd task.pretrain_lr=0.8`);
    `members`: fit name -> its jobs; `jobs`: the jobs used in the fits; `excluded`: job directory ->
    why it was left out; `lower_bounds`: the jobs where nothing escaped (also in `excluded`), whose
    `log_low` is ln of the lower bound, for plotting."""

    fits: Dict[str, LineFit]
    jobs: List[EscapeJob] = field(default_factory=list)
    excluded: Dict[str, str] = field(default_factory=dict)
    lower_bounds: List[EscapeJob] = field(default_factory=list)
    members: Dict[str, List[EscapeJob]] = field(default_factory=dict)


def fit_x(name: str) -> str:
    """The x of a fit name (`batch_over_lr | noise=sgd` -> `batch_over_lr`)."""
    return name.split(" | ", 1)[0]


def _swept(job_dir: Path) -> Dict[str, str]:
    from sgdexp.report.loading import read_overrides

    pairs = (o.split("=", 1) for o in read_overrides(job_dir))
    return {k.lstrip("+~"): v for k, v in (p for p in pairs if len(p) == 2)}


def _groups(jobs: List[EscapeJob], x: str) -> Dict[str, List[EscapeJob]]:
    """The jobs that share every swept value that does not make `x`, by a label of those values."""
    from sgdexp.report.loading import group_by_values

    sources = X_SOURCES[x]
    if x == "inverse_sigma_sq" and not any(j.sigma_matched for j in jobs):
        # σ set by hand: B and η are not in it, and jobs at another η (temperature ησ²/2) fit apart
        sources = {"noise.sigma"}
    varying = sorted({k for j in jobs for k in j.swept if len({jj.swept.get(k) for jj in jobs}) > 1} - sources)
    return {label: [jobs[i] for i in members]
            for label, members in group_by_values([j.swept for j in jobs], varying).items()}


def as_float(value) -> float:
    """A config or summary value as a float; NaN where it is none (missing, None, a word)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _get(cfg, key: str):
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def batch_over_lr(cfg) -> float:
    """B/η of a job's config (`noise.batch_size / optimizer.lr`), NaN where either is missing."""
    lr = as_float(_get(cfg, "optimizer.lr"))
    return as_float(_get(cfg, "noise.batch_size")) / lr if lr > 0 else math.nan


def _x_values(cfg, summary: dict) -> Dict[str, float]:
    sigma = _get(cfg, "noise.sigma")
    if sigma == "matched":
        sigma = summary.get("noise/sigma", summary.get("escape/sigma"))
    sigma = as_float(sigma)
    sharp = as_float(summary.get("sharpness/top_eigenvalue"))
    return {
        "batch_over_lr": batch_over_lr(cfg),
        "inverse_sigma_sq": 1.0 / sigma ** 2 if sigma > 0 else math.nan,
        "inverse_sharpness": 1.0 / sharp if sharp > 0 else math.nan,
        "hurst": as_float(_get(cfg, "noise.hurst")),
        "alpha": as_float(_get(cfg, "noise.alpha")),
    }


def _log(value) -> float:
    v = as_float(value)
    return math.log(v) if v > 0 else math.nan


def _distinct(values: np.ndarray) -> int:
    """Distinct values up to a relative 1e-9 (sharpness computed twice at one minimum may differ
    in the last bits: that is one value, not two)."""
    values = np.sort(values)
    gaps = np.diff(values) > 1e-9 * np.maximum(np.abs(values[1:]), 1e-300)
    return int(len(values) > 0) + int(gaps.sum())


def sweep_fits(multirun_dir: Union[str, Path], select: Optional[Dict[str, object]] = None) -> SweepFits:
    """Fits of ln(mean escape steps) against each swept x over the completed jobs of `multirun_dir`.

    `select`: config key -> value (e.g. `{"noise.name": "sgd"}`): only jobs whose config has these
    values are fitted (the others are listed in `excluded`), so that one multirun over several noise
    modes gives one fit per mode."""
    root = Path(multirun_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    from sgdexp.report.loading import job_dirs

    result = SweepFits(fits={})
    for job_dir in job_dirs(root):
        name = str(job_dir.relative_to(root))
        summary_path = job_dir / SUMMARY
        if not (job_dir / HYDRA_CONFIG).is_file():
            result.excluded[name] = "no .hydra/config.yaml (not a job of a sweep)"
            continue
        if not summary_path.is_file():
            result.excluded[name] = "no summary.json (running, killed or failed before the end)"
            continue
        cfg = OmegaConf.load(job_dir / HYDRA_CONFIG)
        mismatch = [f"{k}={OmegaConf.select(cfg, k, default=None)}" for k, v in (select or {}).items()
                    if OmegaConf.select(cfg, k, default=None) != v]
        if mismatch:
            result.excluded[name] = "not selected: " + ", ".join(mismatch)
            continue
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            result.excluded[name] = "summary.json unreadable (empty or torn)"
            continue
        status = summary.get("status", "missing")
        if status != "completed":
            result.excluded[name] = f"status {status}"
            continue
        job = EscapeJob(name, _x_values(cfg, summary),
                        _log(summary.get("escape/mean_steps")), _log(summary.get("escape/mean_steps_low")),
                        _log(summary.get("escape/mean_steps_high")), bool(summary.get("escape/lower_bound", 0)),
                        _swept(job_dir), _get(cfg, "noise.sigma") == "matched")
        if job.lower_bound:
            result.excluded[name] = "no replica escaped: a lower bound only"
            result.lower_bounds.append(job)
        elif not math.isfinite(job.log_mean):
            result.excluded[name] = "no escape/mean_steps in summary.json (not an escape run?)"
        else:
            result.jobs.append(job)
    for key in X_LABELS:
        for label, members in _groups([j for j in result.jobs if math.isfinite(j.x[key])], key).items():
            pairs = np.array([(j.x[key], j.log_mean) for j in members]).reshape(-1, 2)
            if _distinct(pairs[:, 0]) >= MIN_DISTINCT:
                name = f"{key} | {label}" if label else key
                result.fits[name] = line_fit(pairs[:, 0], pairs[:, 1])
                result.members[name] = members
    return result


def survival_figure(curves: Union[Dict[str, KaplanMeier], Sequence[Tuple[Optional[str], KaplanMeier, str]]],
                    budget: Optional[float] = None) -> Figure:
    """Kaplan-Meier curves (P(no escape by step t)) with their Greenwood bands: `curves` is label ->
    curve (colours C0, C1, ...) or a list of (label or None, curve, colour) (the report's sweeps:
    one colour and one legend entry per group of jobs); `budget`: a dotted line at the step budget,
    where the curves are censored."""
    if isinstance(curves, dict):
        curves = [(label, km, f"C{i % 10}") for i, (label, km) in enumerate(curves.items())]
    fig, ax = new_figure()
    for label, km, color in curves:
        ax.step(km.times, km.survival, where="post", color=color, label=label)
        ax.fill_between(km.times, km.lower, km.upper, step="post", color=color, alpha=0.2, linewidth=0)
    if budget is not None:
        ax.axvline(budget, color="0.4", linestyle=":", label="budget")
    ax.set_xlabel("step t")
    ax.set_ylabel("P(no escape by t)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Survival (Kaplan-Meier, {round(100 * curves[0][1].confidence) if curves else 95}% band)")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")
    return fig


def fits_figure(sweep: SweepFits, keys: Optional[List[str]] = None) -> Figure:
    """One panel per fitted x (default: every x with a fit), one colour per group of jobs: ln(mean
    escape steps) of each job with its 95% interval, the group's fitted line with slope and R², and
    the jobs where nothing escaped as lower bounds (triangles: their true value lies above)."""
    xs = list(dict.fromkeys(fit_x(name) for name in sweep.fits))
    keys = [k for k in (keys or xs) if k in xs]
    fig, axes = new_figure(ncols=max(1, len(keys)))
    axes = np.atleast_1d(axes)
    if not keys:
        axes[0].text(0.5, 0.5, "no x took 3 or more distinct values", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
    for ax, key in zip(axes, keys):
        names = [name for name in sweep.fits if fit_x(name) == key]
        for i, name in enumerate(names):
            jobs, fit, color = sweep.members[name], sweep.fits[name], f"C{i % 10}"
            x = np.array([j.x[key] for j in jobs])
            y = np.array([j.log_mean for j in jobs])
            err = np.array([[j.log_mean - j.log_low, j.log_high - j.log_mean] for j in jobs]).T
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o", color=color, capsize=3)
            grid = np.linspace(x.min(), x.max(), 50)
            group = name.split(" | ", 1)[1] + ": " if " | " in name else ""
            ax.plot(grid, fit.intercept + fit.slope * grid, "-", color=color,
                    label=f"{group}slope {fit.slope:.3g} ± {fit.slope_se:.2g}, R² {fit.r2:.3f}")
        bounds = [(j.x[key], j.log_low) for j in sweep.lower_bounds if math.isfinite(j.x[key])]
        if bounds:
            bx, by = zip(*bounds)
            ax.plot(bx, by, "^", color="0.5", label="nothing escaped (lower bound)")
        ax.set_xlabel(X_LABELS[key])
        ax.set_ylabel("ln mean escape steps")
        ax.legend(fontsize="small")
    return fig


def fit_table(sweep: SweepFits) -> Tuple[List[str], List[list]]:
    """(columns, rows) of the fits, for `Tracker.log_table` and the report."""
    columns = ["x", "slope", "slope_se", "intercept", "r2", "n"]
    return columns, [[k, f.slope, f.slope_se, f.intercept, f.r2, f.n] for k, f in sweep.fits.items()]
