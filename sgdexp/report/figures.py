"""The report's figures, each drawn only where its data exist (None otherwise).

Keys are read by prefix, so sections written by other analyses (`diffusion/`, `curvature/`,
`escape/`) show up without this module knowing every name: scalars over steps for any key under
the prefix, and the curves a section is known for (per-layer α, autocorrelation, MSD, survival,
variance against curvature) where arrays with those names are present.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from sgdexp.plotting import new_figure
from sgdexp.report.loading import Run, swept_keys

log = logging.getLogger(__name__)

MAX_PANELS = 6


def _group(run: Run, runs: Sequence[Run]) -> str:
    """What tells a job apart in a legend: its values of the swept keys, seed left out."""
    return run.group_label(swept_keys(runs)) if len(runs) > 1 else run.label


def _colours(runs: Sequence[Run]) -> Dict[str, str]:
    """One colour per group of jobs that differ only by seed."""
    groups = list(dict.fromkeys(_group(r, runs) for r in runs))
    return {g: f"C{i % 10}" for i, g in enumerate(groups)}


def _grid(n: int):
    ncols = min(n, 3)
    fig, axes = new_figure(ncols, math.ceil(n / ncols), size=(4.2, 3.2))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _plot_keys(runs: Sequence[Run], keys: Sequence[str], title: str) -> Optional[Figure]:
    keys = [k for k in keys if any(r.series(k)[0] for r in runs)]
    if not keys:
        return None
    colours, sweep = _colours(runs), len(runs) > 1
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        labelled = set()
        for run in runs:
            steps, values = run.series(key)
            if not steps:
                continue
            group = _group(run, runs)
            label = group if sweep and group not in labelled else None
            labelled.add(group)
            ax.plot(steps, values, color=colours[group] if sweep else "C0", label=label, lw=1.2,
                    marker="o" if len(steps) < 12 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    if sweep:
        handles, labels = [], []
        for ax in axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h), labels.append(l)
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncols=min(4, len(labels)))
    fig.suptitle(title)
    return fig


def training_curves(runs: Sequence[Run]) -> Optional[Figure]:
    keys = ["train/loss", "test/loss", "train/batch_loss", "test/accuracy", "gap/loss", "lr"]
    return _plot_keys(runs, keys, "Training")


def section_keys(runs: Sequence[Run], prefix: str) -> List[str]:
    """A section's headline scalars: keys one level under `prefix`, then `<name>/median` ones."""
    keys = sorted({k for r in runs for k in r.scalar_keys(prefix)})
    top = [k for k in keys if "/" not in k[len(prefix):]]
    medians = [k for k in keys if k[len(prefix):].count("/") == 1 and k.endswith("/median")]
    return (top + medians)[:MAX_PANELS]


def section_scalars(runs: Sequence[Run], prefix: str, title: str) -> Optional[Figure]:
    return _plot_keys(runs, section_keys(runs, prefix), title)


def alpha_by_layer(run: Run) -> Optional[Figure]:
    """Per-layer SαS tail index at the last measurement (Battash & Lindenbaum's per-layer view)."""
    arrays = {k: np.asarray(v, float) for k, v in run.last_arrays("noise_stats/alpha/").items()}
    arrays = {k.split("/", 2)[2]: v[np.isfinite(v)] for k, v in arrays.items()}
    arrays = {k: v for k, v in arrays.items() if v.size}
    if not arrays:
        return None
    fig, ax = new_figure(size=(max(6.0, 0.5 * len(arrays)), 4.2))
    ax.boxplot(list(arrays.values()), showfliers=False)
    ax.set_xticks(range(1, len(arrays) + 1), list(arrays), rotation=60, fontsize=7)
    ax.axhline(2.0, color="grey", ls="--", lw=0.8)
    pooled = run.summary.get("noise_stats/alpha_pooled")
    ax.set_title("per-layer α of SGN (last measurement)" + (f"; pooled α = {pooled:.3g}" if pooled else ""),
                 fontsize=10)
    ax.set_ylabel("α (2: Gaussian)")
    return fig


def memory_curves(run: Run) -> Optional[Figure]:
    """SGN autocorrelation over lags and the distribution of Hurst exponents (last window)."""
    arrays = run.last_arrays("noise_memory/")
    acf = arrays.get("noise_memory/autocorrelation")
    hurst = {k.split("hurst_", 1)[1]: np.asarray(v, float) for k, v in arrays.items() if "/hurst_" in k}
    if acf is None and not hurst:
        return None
    fig, axes = new_figure(2, 1)
    if acf is not None:
        axes[0].plot(range(len(acf)), acf, marker=".", lw=1)
        axes[0].axhline(0, color="grey", lw=0.8)
        axes[0].set(title="SGN autocorrelation", xlabel="lag (steps)")
    for method, h in hurst.items():
        h = h[np.isfinite(h)]
        if h.size:
            axes[1].hist(h, bins=20, range=(0, 1), alpha=0.6, label=f"{method} (median {np.median(h):.2f})")
    axes[1].axvline(0.5, color="grey", ls="--", lw=0.8)
    axes[1].set(title="Hurst exponent of SGN series", xlabel="H")
    if hurst:
        axes[1].legend(fontsize=7)
    return fig


def _named(arrays: Dict[str, list], *words: str) -> Optional[np.ndarray]:
    for key, value in arrays.items():
        if any(w in key.rsplit("/", 1)[-1].lower() for w in words):
            return np.asarray(value, float)
    return None


def msd_curve(run: Run) -> Optional[Figure]:
    """MSD(τ) on log-log axes with its exponent γ (keys under `diffusion/`, found by name)."""
    arrays = run.last_arrays("diffusion/")
    msd = _named(arrays, "msd")
    if msd is None or not msd.size:
        return None
    lags = _named(arrays, "lag", "tau")
    lags = lags if lags is not None and lags.size == msd.size else np.arange(1, msd.size + 1, dtype=float)
    ok = (lags > 0) & (msd > 0) & np.isfinite(msd)
    fig, ax = new_figure()
    ax.loglog(lags[ok], msd[ok], marker=".", lw=1)
    gamma = next((v for k, v in run.summary.items() if k.startswith("diffusion/")
                  and any(w in k for w in ("exponent", "gamma")) and isinstance(v, (int, float))), None)
    ax.set(title="MSD(τ)" + (f", γ = {gamma:.3g}" if gamma is not None else ""), xlabel="τ (steps)",
           ylabel="⟨‖θ(t+τ) − θ(t)‖²⟩")
    return fig


def variance_vs_curvature(run: Run) -> Optional[Figure]:
    """Weight variance along Hessian eigendirections against their eigenvalue (keys under `curvature/`)."""
    arrays = run.last_arrays("curvature/")
    eig, var = _named(arrays, "eigenvalue"), _named(arrays, "variance")
    if eig is None or var is None or eig.size != var.size:
        return None
    ok = (eig > 0) & (var > 0)
    fig, ax = new_figure()
    ax.loglog(eig[ok], var[ok], "o", ms=4)
    ax.set(title="weight variance against curvature", xlabel="Hessian eigenvalue λ", ylabel="variance along v_λ")
    return fig


def survival_curves(runs: Sequence[Run]) -> Optional[Figure]:
    """Escape survival P(no escape by t) per run from `escape.csv`: Kaplan–Meier with its Greenwood
    band (`sgdexp.stats.survival`), drawn by the escape task's own `survival_figure`."""
    from sgdexp.escape_sweeps import survival_figure
    from sgdexp.stats.survival import kaplan_meier

    runs = [r for r in runs if r.escape]
    if not runs:
        return None
    curves = {}
    for run in runs:
        steps = np.array([r["step"] for r in run.escape], dtype=float)
        escaped = np.array([r["escaped"] for r in run.escape]).astype(bool)
        curves[f"{run.label} ({escaped.sum()}/{escaped.size} escaped)"] = kaplan_meier(steps, escaped)
    return survival_figure(curves)


def run_figures(runs: Sequence[Run]) -> Dict[str, Figure]:
    """Every figure the data allow, by name (`training`, `noise_stats`, ...); per-run detail figures
    (per-layer α, autocorrelation, MSD, variance against curvature) for a single run."""
    figures: Dict[str, Optional[Figure]] = {
        "training": training_curves(runs),
        "noise_mode": _plot_keys(runs, [k for k in section_keys(runs, "noise/") if k not in ("noise/norm",)],
                                 "Injected noise"),
        "noise_stats": section_scalars(runs, "noise_stats/", "Noise statistics (tail index, Gaussianity, scale)"),
        "noise_memory": section_scalars(runs, "noise_memory/", "Noise memory (Hurst, autocorrelation)"),
        "diffusion": section_scalars(runs, "diffusion/", "Diffusion"),
        "curvature": section_scalars(runs, "curvature/", "Curvature"),
        "escape": section_scalars(runs, "escape/", "Escape"),
        "escape_survival": survival_curves(runs),
    }
    if len(runs) == 1:
        run = runs[0]
        figures.update(alpha_by_layer=alpha_by_layer(run), memory_curves=memory_curves(run),
                       msd=msd_curve(run), variance_vs_curvature=variance_vs_curvature(run))
    return {name: fig for name, fig in figures.items() if fig is not None}
