"""The report's figures, each drawn only where its data exist (None otherwise).

Keys are read by prefix, so sections written by other analyses (`diffusion/`, `curvature/`,
`escape/`) show up without this module knowing every name: scalars over steps for any key under
the prefix, and the curves a section is known for (per-layer α and Hurst, autocorrelation, MSD,
survival, variance against curvature) where arrays with those names are present.

One function draws each kind of figure for a run and for a sweep: given several runs it draws one
line per job, one colour and one legend entry per group of jobs that differ only by seed, labelled
by the swept keys (`_lines`). `panels` splits a sweep with more than `MAX_LINES` groups into small
multiples (one panel per value of a swept key), so no axes carries more than `MAX_LINES` groups.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from sgdexp.plotting import new_figure
from sgdexp.report.loading import Run, swept_keys

log = logging.getLogger(__name__)

MAX_PANELS = 6
MAX_LAYERS = 9  # layers drawn through training: evenly spaced by depth when a model has more
MAX_LINES = 12  # groups of jobs drawn in one axes; `panels` splits a larger sweep into small multiples
# a section's headline scalars, first where they exist (any other key under the prefix follows)
HEADLINE = {
    "noise_stats/": ["alpha_pooled_standardized", "alpha_median", "alpha_scale_mixture", "non_gaussian_fraction",
                     "noise_scale", "noise_norm"],
    "noise_memory/": ["autocorrelation_lag1"],
    # γ through training (window_gamma), whether a γ > 1 is a drift (persistence), the first waiting
    # time's fits; not the path length (near-linear in steps) nor the record's width (dims)
    "diffusion/": ["distance_sq", "window_gamma", "persistence", "gamma_early", "gamma_late", "crossover_step"],
    # Xie et al.'s C ∝ H checked: the alignment of the noise covariance with the Hessian
    "curvature/": ["top_eigenvalue", "trace", "alignment/proj_cosine", "alignment/proj_diag_pearson"],
    # the gaps first, then what the papers relate them to
    "generalization/": ["loss_gap", "accuracy_gap", "top_eigenvalue", "trace", "distance_from_init", "weight_norm"],
}


def group_of(run: Run, runs: Sequence[Run]) -> str:
    """What tells a job apart in a legend: its values of the swept keys, seed left out."""
    return run.group_label(swept_keys(runs)) if len(runs) > 1 else run.label


def group_colours(runs: Sequence[Run]) -> Dict[str, str]:
    """One colour per group of jobs that differ only by seed (tab20 beyond ten groups)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    groups = list(dict.fromkeys(group_of(r, runs) for r in runs))
    if len(groups) <= 10:
        return {g: f"C{i}" for i, g in enumerate(groups)}
    return {g: to_hex(colormaps["tab20"](i % 20)) for i, g in enumerate(groups)}


def _lines(runs: Sequence[Run]) -> List[Tuple[Run, Optional[str], str]]:
    """(run, group, colour) for each job drawn as a line: one colour per group of jobs that differ
    only by seed, at most MAX_LINES groups (the first ones; `panels` keeps a sweep below that); a
    single run: no group (no legend)."""
    if len(runs) == 1:
        return [(runs[0], None, "C0")]
    colours, out, seen = group_colours(runs), [], set()
    for run in runs:
        group = group_of(run, runs)
        if group not in seen and len(seen) >= MAX_LINES:
            continue
        out.append((run, group, colours[group]))
        seen.add(group)
    return out


def _left_out(runs: Sequence[Run]) -> str:
    """A title's note when `_lines` leaves groups out (' (first 12 of 15 settings)'), else ''."""
    if len(runs) == 1:
        return ""
    n = len({group_of(r, runs) for r in runs})
    return f" (first {MAX_LINES} of {n} settings)" if n > MAX_LINES else ""


def _first(seen: set, group: Optional[str]) -> Optional[str]:
    """The legend label of a line: its group the first time the group is drawn in an axes, else None."""
    if group is None or group in seen:
        return None
    seen.add(group)
    return group


def figure_legend(fig: Figure, axes) -> None:
    """One legend below the figure, each label once (a sweep's groups); none for a single run."""
    handles, labels = [], []
    for ax in np.atleast_1d(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h), labels.append(lab)
    if labels:
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncols=min(3, len(labels)))


def panels(runs: Sequence[Run], max_lines: int = MAX_LINES) -> List[Tuple[str, List[Run]]]:
    """Small multiples of a sweep: [(title, jobs)] with at most `max_lines` groups of jobs (that differ
    only by seed) in each. One panel (title "") when the sweep has that few; else one panel per value
    of the swept key that leaves the fewest panels with at most `max_lines` groups each (title
    `key=value`); else consecutive chunks of `max_lines` groups (title `settings 1–12 of 30`)."""
    runs = list(runs)
    swept = swept_keys(runs)
    groups = list(dict.fromkeys(r.group_label(swept) for r in runs))
    if len(runs) <= 1 or len(groups) <= max_lines:
        return [("", runs)]
    best = None
    for key in [k for k in swept if k != "seed"]:
        rest = [k for k in swept if k != key]
        parts: Dict[str, List[Run]] = {}
        for run in runs:
            parts.setdefault(run.override_values.get(key, "default"), []).append(run)
        widest = max(len({r.group_label(rest) for r in part}) for part in parts.values())
        if widest <= max_lines and (best is None or len(parts) < len(best[1])):
            best = (key, parts)
    if best is not None:
        key, parts = best
        return [(f"{key}={value}", part) for value, part in parts.items()]
    chunks = []
    for start in range(0, len(groups), max_lines):
        chosen = set(groups[start:start + max_lines])
        span = f"settings {start + 1}–{start + len(chosen)}" if len(chosen) > 1 else f"setting {start + 1}"
        chunks.append((f"{span} of {len(groups)}", [r for r in runs if r.group_label(swept) in chosen]))
    return chunks


def panel_grid(n: int):
    ncols = min(n, 3)
    fig, axes = new_figure(ncols, math.ceil(n / ncols), size=(4.2, 3.2))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _plot_keys(runs: Sequence[Run], keys: Sequence[str], title: str) -> Optional[Figure]:
    """One panel per key, its value over steps: one line per job, one colour per group (`_lines`).
    A key is drawn where there is a line or jobs to compare: with one job, a key it logged once
    (curvature's end-of-run measurement in a short run) is a number in summary.json, not a figure."""
    least = 2 if len(runs) == 1 else 1
    keys = [k for k in keys if any(len(r.series(k)[0]) >= least for r in runs)]
    if not keys:
        return None
    fig, axes = panel_grid(len(keys))
    for ax, key in zip(axes, keys):
        seen: set = set()
        for run, group, colour in _lines(runs):
            steps, values = _broken_at_chunks(run, *run.series(key))
            if steps:
                ax.plot(steps, values, color=colour, label=_first(seen, group), lw=1.2,
                        marker="o" if len(steps) < 12 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    figure_legend(fig, axes)
    fig.suptitle(title + _left_out(runs))
    return fig


def training_curves(runs: Sequence[Run]) -> Optional[Figure]:
    keys = ["train/loss", "test/loss", "train/batch_loss", "test/accuracy", "gap/loss", "lr"]
    return _plot_keys(runs, keys, "Training")


# logged for the record, not a measurement: which replica chunk a row of an escape run is from
BOOKKEEPING = {"escape/chunk"}


def _broken_at_chunks(run: Run, steps: List[int], values: List[float]) -> Tuple[List[int], List[float]]:
    """`(steps, values)` with a gap (NaN) where an escape run's replica chunk changes: each chunk counts
    its own replicas from the start (escape/inside), and a line across chunks drew a ramp between them."""
    chunk_at = {r["step"]: r["escape/chunk"] for r in run.metrics if "escape/chunk" in r}
    if len(set(chunk_at.values())) < 2:
        return steps, values
    out_steps, out_values, last = [], [], None
    for step, value in zip(steps, values):
        chunk = chunk_at.get(step, last)
        if last is not None and chunk != last:
            out_steps.append(step)
            out_values.append(math.nan)
        out_steps.append(step)
        out_values.append(value)
        last = chunk
    return out_steps, out_values


def section_keys(runs: Sequence[Run], prefix: str) -> List[str]:
    """A section's headline scalars: keys one level under `prefix`, then `<name>/median` ones, the
    section's `HEADLINE` keys first where they exist; at most MAX_PANELS."""
    keys = sorted({k for r in runs for k in r.scalar_keys(prefix)} - BOOKKEEPING)
    top = [k for k in keys if "/" not in k[len(prefix):]]
    medians = [k for k in keys if k[len(prefix):].count("/") == 1 and k.endswith("/median")]
    first = [prefix + k for k in HEADLINE.get(prefix, []) if prefix + k in keys]
    return list(dict.fromkeys(first + top + medians))[:MAX_PANELS]


def section_scalars(runs: Sequence[Run], prefix: str, title: str) -> Optional[Figure]:
    return _plot_keys(runs, section_keys(runs, prefix), title)


def _layers(runs: Sequence[Run], quantity: str) -> List[str]:
    """The layers with a `<quantity>/<layer>/median` scalar (written by `layer_quantiles`), in the
    order the run logged them (the model's order), at most MAX_LAYERS evenly spaced by depth."""
    pattern = re.compile(re.escape(quantity) + r"/(.+)/median")
    layers: Dict[str, None] = {}
    for run in runs:
        for row in run.metrics:
            for key in row:
                if (m := pattern.fullmatch(key)) and "/" not in m.group(1):
                    layers.setdefault(m.group(1))
    layers = list(layers)
    if len(layers) > MAX_LAYERS:
        layers = [layers[i] for i in np.unique(np.linspace(0, len(layers) - 1, MAX_LAYERS).round().astype(int))]
    return layers


def layer_curves(runs: Sequence[Run], quantity: str, title: str) -> Optional[Figure]:
    """A per-layer quantity through training (`<quantity>/<layer>/median`: per-layer α of the SGN,
    per-layer Hurst exponent): one panel per layer, one line per job."""
    layers = _layers(runs, quantity)
    if not layers:
        return None
    n = len({m.group(1) for r in runs for k in r.scalar_keys(quantity + "/")
             if (m := re.fullmatch(re.escape(quantity) + r"/([^/]+)/median", k))})
    fig = _plot_keys(runs, [f"{quantity}/{layer}/median" for layer in layers],
                     title + (f" ({len(layers)} of {n} layers, evenly spaced)" if n > len(layers) else ""))
    if fig is not None:
        for ax in fig.axes:
            if ax.get_visible():
                ax.set_title(ax.get_title()[len(quantity) + 1:-len("/median")], fontsize=9)
    return fig


def hurst_methods(runs: Sequence[Run]) -> List[str]:
    """The Hurst estimators a noise_memory analysis logged (`noise_memory/hurst_<method>/median`)."""
    return sorted({m.group(1) for r in runs for k in r.scalar_keys("noise_memory/hurst_")
                   if (m := re.fullmatch(r"noise_memory/hurst_([^/]+)/median", k))})


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
    pooled = run.summary.get("noise_stats/alpha_pooled_standardized")
    ax.set_title("per-layer α of SGN (last measurement)"
                 + (f"; pooled α (standardized) = {pooled:.3g}" if isinstance(pooled, (int, float)) else ""),
                 fontsize=10)
    ax.set_ylabel("α (2: Gaussian)")
    return fig


def _plain_log_ticks(ax) -> None:
    """Log axes labelled 1, 2, 5 × 10^k in plain numbers: readable also when the data span less than
    a decade (matplotlib's default then labels minor ticks as 9.25×10⁰)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log":
            decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            axis.set_minor_formatter(NullFormatter())


def memory_curves(runs: Sequence[Run]) -> Optional[Figure]:
    """SGN autocorrelation over lags (one line per job), and the Hurst exponents of the SGN series
    (last window): their distribution for a single run, each job's median and quartiles per method
    for a sweep (side by side, one colour per group)."""
    found = [(run, group, c, run.last_arrays("noise_memory/")) for run, group, c in _lines(runs)]
    found = [f for f in found if "noise_memory/autocorrelation" in f[3] or any("/hurst_" in k for k in f[3])]
    if not found:
        return None
    single = len(runs) == 1
    fig, axes = new_figure(2, 1)
    seen: set = set()
    for run, group, colour, arrays in found:
        acf = arrays.get("noise_memory/autocorrelation")
        if acf is not None:
            axes[0].plot(range(len(acf)), acf, marker=".", lw=1, color=colour, label=_first(seen, group))
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set(title="SGN autocorrelation" + _left_out(runs), xlabel="lag (steps)")
    methods: List[str] = []
    for j, (run, group, colour, arrays) in enumerate(found):
        hurst = {k.split("hurst_", 1)[1]: np.asarray(v, float) for k, v in arrays.items() if "/hurst_" in k}
        for method, h in hurst.items():
            h = h[np.isfinite(h)]
            if not h.size:
                continue
            methods += [method] if method not in methods else []
            if single:  # the distribution over its series
                axes[1].hist(h, bins=20, range=(0, 1), alpha=0.6, label=f"{method} (median {np.median(h):.2f})")
            else:  # each job's median and quartiles, side by side within each method
                q1, med, q3 = np.quantile(h, [0.25, 0.5, 0.75])
                x = methods.index(method) + 0.6 * ((j + 0.5) / len(found) - 0.5)
                axes[1].errorbar([x], [med], yerr=[[med - q1], [q3 - med]], fmt="o", color=colour, capsize=3)
    if single:
        axes[1].axvline(0.5, color="grey", ls="--", lw=0.8)
        axes[1].set(title="Hurst exponent of SGN series", xlabel="H")
        if methods:
            axes[1].legend(fontsize=7)
    else:
        axes[1].set_xticks(range(len(methods)), methods)
        axes[1].axhline(0.5, color="grey", ls="--", lw=0.8)
        axes[1].set(title="Hurst exponent of SGN series (median, quartiles)", ylabel="H")
        figure_legend(fig, axes)
    return fig


def _named(arrays: Dict[str, list], *words: str) -> Optional[np.ndarray]:
    for key, value in arrays.items():
        if any(w in key.rsplit("/", 1)[-1].lower() for w in words):
            return np.asarray(value, float)
    return None


def _msd_of(run: Run, first_only: bool):
    """[(t_w or None, lags, MSD, local exponents or None, crossover lag)] of a run's `diffusion/` arrays:
    each waiting time's curve (`diffusion/tw<w>/...`, written by analysis=[diffusion]), or any pair of
    arrays named *lag*/*msd*."""
    arrays = run.last_arrays("diffusion/")
    waits = sorted(int(m.group(1)) for k in arrays if (m := re.fullmatch(r"diffusion/tw(\d+)/msd", k)))
    curves = []
    for w in waits[:1] if first_only else waits:
        lags, msd = np.asarray(arrays.get(f"diffusion/tw{w}/lags", []), float), np.asarray(arrays[f"diffusion/tw{w}/msd"], float)
        local = arrays.get(f"diffusion/tw{w}/gamma_local")
        cross = run.summary.get(f"diffusion/tw{w}/crossover_step")
        cross = float(cross) - w if isinstance(cross, (int, float)) and math.isfinite(cross) else math.nan
        if lags.size == msd.size and msd.size:
            curves.append((w, lags, msd, None if local is None else np.asarray(local, float), cross))
    if not curves:
        msd, lags = _named(arrays, "msd"), _named(arrays, "lag", "tau")
        if msd is not None and msd.size:
            lags = lags if lags is not None and lags.size == msd.size else np.arange(1, msd.size + 1, dtype=float)
            curves.append((None, lags, msd, None, math.nan))
    return curves


def _fit_parts(lags: np.ndarray, msd: np.ndarray, cross: float):
    """[(mask, γ, c)] of the power laws MSD = c τ^γ fitted below and above the crossover lag (at the
    middle of the lags on a log scale when there is none), each over 2 or more lags."""
    from sgdexp.stats import power_law_fit

    split = cross if math.isfinite(cross) else float(np.sqrt(lags[0] * lags[-1])) if lags.size else math.nan
    out = []
    for part in (lags <= split, lags >= split):
        if part.sum() >= 2:
            out.append((part, *power_law_fit(lags[part], msd[part])))
    return out


def msd_curves(runs: Sequence[Run]) -> Optional[Figure]:
    """Weight diffusion (Chen et al.): MSD(t_w, τ) log–log with the power laws fitted below and above
    the super-/sub-diffusive crossover, and the local exponent γ(τ) with the crossover marked. A single
    run: every waiting time, whose legend entry gives γ below → above the crossover, and the MSD over
    its last records; a sweep: each job's first waiting time (the distance from initialisation), one
    colour per group, whose legend entry gives γ below → above (mean over the group's jobs)."""
    single = len(runs) == 1
    found = [(run, group, c, _msd_of(run, first_only=not single)) for run, group, c in _lines(runs)]
    found = [f for f in found if f[3]]
    if not found:
        return None
    fig, (ax, ax_local) = new_figure(2)
    first_line: Dict[str, object] = {}
    gammas: Dict[str, List[List[float]]] = {}
    for run, group, colour, curves in found:
        for i, (w, lags, msd, local, cross) in enumerate(curves):
            colour_i = f"C{i}" if single else colour
            name = f"$t_w$={w}" if single and w is not None else None
            ok = (lags > 0) & (msd > 0) & np.isfinite(msd)
            lags, msd = lags[ok], msd[ok]
            fits = _fit_parts(lags, msd, cross)
            # a run's legend gives each waiting time's exponents (text beside the fits overlapped)
            fitted = name and fits and name + ": γ " + " → ".join(f"{g:.2f}" for _, g, _ in fits)
            (line,) = ax.loglog(lags, msd, "o-", ms=3, lw=1.2, color=colour_i, label=fitted or name)
            for part, g, c in fits:
                ax.loglog(lags[part], c * lags[part] ** g, "--", color=colour_i, lw=1)
            if group is not None:
                first_line.setdefault(group, line)
                gammas.setdefault(group, []).append([g for _, g, _ in fits])
            if local is not None:
                ax_local.semilogx(lags, local[ok], "o-", ms=3, lw=1, color=colour_i, label=name)
            if math.isfinite(cross):
                ax_local.axvline(cross, color=colour_i, ls=":", lw=1)
        arrays = run.last_arrays("diffusion/window_")
        if single and "diffusion/window_msd" in arrays and "diffusion/window_lags" in arrays:
            gamma = run.summary.get("diffusion/window_gamma", math.nan)
            ax.loglog(arrays["diffusion/window_lags"], arrays["diffusion/window_msd"], "k.-", ms=3, lw=1,
                      label=f"last records, γ={gamma:.2f}")
    for group, line in first_line.items():  # a sweep's legend: the group and its fitted exponents
        parts = [g for g in gammas[group] if g]
        width = max((len(g) for g in parts), default=0)
        means = [float(np.mean([g[k] for g in parts if len(g) == width])) for k in range(width)]
        line.set_label(group + (": γ " + " → ".join(f"{m:.2f}" for m in means) if means else ""))
    projected = any(r.summary.get("diffusion/projected") for r, *_ in found)
    ax.set(xlabel="lag τ (steps)", ylabel="MSD(t_w, τ)" + (" (projected)" if projected else ""),
           title="Weight diffusion" + _left_out(runs))
    ax_local.axhline(1.0, color="grey", lw=1)
    ax_local.set(xlabel="lag τ (steps)", ylabel="local exponent γ(τ)", title="Super- (>1) and sub-diffusion (<1)")
    if single:
        for a in (ax, ax_local):
            if a.get_legend_handles_labels()[1]:
                a.legend(fontsize=8)
    else:
        figure_legend(fig, (ax,))
    return fig


def variance_vs_curvature(runs: Sequence[Run]) -> Optional[Figure]:
    """Weight variance along Hessian eigendirections against their eigenvalue (one colour per group),
    and where a prediction exists the measured/predicted ratio against the direction's relaxation
    time (Kühn & Rosenow's figure): for uncorrelated noise (`curvature/variance_ratio`, dashed line
    and circles), for the noise's own memory (`curvature/variance_ratio_correlated`, e.g. epoch
    sampling's anti-correlation; dotted line and open squares) and for the noise split at the
    window's mean weights (`curvature/variance_ratio_split`; dash-dotted line and open triangles)."""
    found = []
    for run, group, colour in _lines(runs):
        arrays = run.last_arrays("curvature/")
        eig = arrays.get("curvature/window_eigenvalues", arrays.get("curvature/eigenvalues"))
        var = arrays.get("curvature/weight_variance")
        if eig is not None and var is not None and len(eig) == len(var):
            found.append((run, group, colour, np.asarray(eig, float), np.asarray(var, float), arrays))
    if not found:
        return None
    # (ratio's key, the prediction's line and the ratios' marker, what is predicted)
    predictions = (("curvature/variance_ratio", "--", "o", "uncorrelated noise"),
                   ("curvature/variance_ratio_correlated", ":", "s", "the noise's memory"),
                   ("curvature/variance_ratio_split", "-.", "^", "memory, moving part uncorrelated"))
    drawn = [p for p in predictions if any(p[0] in f[5] and "curvature/relaxation_steps" in f[5] for f in found)]
    fig, axes = new_figure(2 if drawn else 1)
    axes = np.atleast_1d(axes)
    seen: set = set()
    for run, group, colour, eig, var, arrays in found:
        ok = (eig > 0) & (var > 0)
        axes[0].loglog(eig[ok], var[ok], "o", ms=4, color=colour, label=_first(seen, group))
        for key, line, *_ in drawn:
            ratio = np.asarray(arrays.get(key, []), float)
            if ratio.size == var.size:
                good = ok & (ratio > 0)
                order = np.argsort(eig[good])
                axes[0].loglog(eig[good][order], (var[good] / ratio[good])[order], line, lw=1, color=colour)
    # one prediction: named in the title; more: in the legend, each with its line and marker
    named = " (dashed: uncorrelated noise)" if [p[0] for p in drawn] == [predictions[0][0]] else ""
    axes[0].set(title="weight variance against curvature" + named + _left_out(runs),
                xlabel="Hessian eigenvalue λ", ylabel="variance along v_λ")
    if drawn:
        seen = set()
        for key, line, marker, name in drawn:
            for run, group, colour, eig, var, arrays in found:
                if key not in arrays or "curvature/relaxation_steps" not in arrays:
                    continue
                tau, ratio = np.asarray(arrays["curvature/relaxation_steps"], float), np.asarray(arrays[key], float)
                ok = (tau > 0) & (ratio > 0)
                order = np.argsort(tau[ok])
                axes[1].loglog(tau[ok][order], ratio[ok][order], marker + line, ms=3, lw=1, color=colour,
                               mfc=colour if marker == "o" else "none", label=_first(seen, group))
            if len(drawn) > 1:  # which line and marker is which prediction, in black
                axes[1].plot([], [], marker + line, color="k", mfc="k" if marker == "o" else "none", label=name)
        axes[1].axhline(1.0, color="grey", lw=0.8)
        axes[1].set(title="measured / predicted variance", xlabel="relaxation time 1/(η_eff λ) (steps)",
                    ylabel="ratio (1: the prediction)")
    for a in axes:
        _plain_log_ticks(a)
    figure_legend(fig, axes)
    return fig


def survival_curves(runs: Sequence[Run]) -> Optional[Figure]:
    """Escape survival P(no escape by t) per job from `escape.csv`: Kaplan–Meier with its Greenwood
    band (`sgdexp.stats.survival`), drawn by the escape task's own `survival_figure`; in a sweep one
    colour per group, whose legend entry counts the escapes of all its jobs."""
    from sgdexp.escape_sweeps import survival_figure
    from sgdexp.stats.survival import kaplan_meier

    lines = [(run, group, colour) for run, group, colour in _lines(runs) if run.escape]
    if not lines:
        return None
    counts: Dict[Optional[str], List[int]] = {}
    curves = []
    for run, group, colour in lines:
        steps = np.array([r["step"] for r in run.escape], dtype=float)
        escaped = np.array([r["escaped"] for r in run.escape]).astype(bool)
        count = counts.setdefault(group, [0, 0, 0])
        count[0], count[1], count[2] = count[0] + int(escaped.sum()), count[1] + escaped.size, count[2] + 1
        curves.append((group, kaplan_meier(steps, escaped), colour))
    seen: set = set()
    labelled = []
    for group, km, colour in curves:
        if group is None:  # a single run: its noise mode, as the run's own figure (its overrides clip)
            e, n, _ = counts[None]
            run = lines[0][0]
            labelled.append((f"{run.config_value('noise.name') or run.label} ({e}/{n} escaped)", km, colour))
            continue
        e, n, jobs = counts[group]
        label = _first(seen, group)
        labelled.append((label and f"{label} ({e}/{n} escaped" + (f", {jobs} jobs)" if jobs > 1 else ")"), km, colour))
    budgets = {run.config_value("task.max_steps") for run, _, _ in lines}
    fig = survival_figure(labelled, budget=budgets.pop() if len(budgets) == 1 else None)  # one budget: drawn
    if len(runs) > 1:
        fig.axes[0].set_title(fig.axes[0].get_title() + _left_out(runs))
    return fig


def run_figures(runs: Sequence[Run]) -> Dict[str, Figure]:
    """Every figure the data allow, by name (`training`, `noise_stats`, ...): scalars through training
    (per-layer α and Hurst too) and the per-run curves (autocorrelation and Hurst, MSD, variance
    against curvature, survival), one line per job in a sweep, one colour per group (at most
    MAX_LINES groups: split a larger sweep with `panels` first); per-layer α at the last measurement
    for a single run."""
    figures: Dict[str, Optional[Figure]] = {
        "training": training_curves(runs),
        "noise_mode": _plot_keys(runs, [k for k in section_keys(runs, "noise/") if k not in ("noise/norm",)],
                                 "Injected noise"),
        "noise_stats": section_scalars(runs, "noise_stats/", "Noise statistics (tail index, Gaussianity, scale)"),
        "alpha_through_training": layer_curves(runs, "noise_stats/alpha", "Per-layer α of SGN through training (median)"),
        "noise_memory": section_scalars(runs, "noise_memory/", "Noise memory (Hurst, autocorrelation)"),
        **{f"hurst_{m}_through_training": layer_curves(runs, f"noise_memory/hurst_{m}",
                                                       f"Per-layer Hurst exponent ({m}) of SGN through training (median)")
           for m in hurst_methods(runs)},
        "diffusion": section_scalars(runs, "diffusion/", "Diffusion"),
        "curvature": section_scalars(runs, "curvature/", "Curvature"),
        "generalization": section_scalars(runs, "generalization/", "Generalization"),
        "escape": section_scalars(runs, "escape/", "Escape"),
        "escape_survival": survival_curves(runs),
        "memory_curves": memory_curves(runs),
        "msd": msd_curves(runs),
        "variance_vs_curvature": variance_vs_curvature(runs),
    }
    if len(runs) == 1:
        figures["alpha_by_layer"] = alpha_by_layer(runs[0])
    return {name: fig for name, fig in figures.items() if fig is not None}
