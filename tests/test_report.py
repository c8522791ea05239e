"""`python -m sgdexp.report`: the report of a finished run and of a finished sweep renders, lists
failed and diverged jobs, references only files that exist, and shows each section where its data are."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import assert_self_contained, cli, train_run
from sgdexp.report import build_report, find_runs, run_figures
from sgdexp.report.__main__ import main as report_main
from sgdexp.report.loading import swept_keys

SHORT = ["trainer.steps=40", "trainer.eval_every=20", "trainer.log_every=10", "model.widths=[16]"]
STATS = ["analysis=[noise_stats]", "analysis.noise_stats.every=20", "analysis.noise_stats.batches=16",
         "analysis.noise_stats.params=200"]



def test_run_report_and_figures_at_the_end_of_the_run(tmp_path):
    run = tmp_path / "run"
    summary = train_run(run, SHORT + STATS + ["trainer.figures=true"])
    assert summary["status"] == "completed"
    # the run itself drew its figures (Tracker.log_figure: figures/*.png, W&B images when on)
    assert {p.stem for p in (run / "figures").glob("*.png")} >= {"training", "noise_stats", "alpha_by_layer"}
    report = build_report(run)
    html = assert_self_contained(report)
    assert html.count("data:image/png;base64,") == len(list((run / "report_figures").glob("*.png"))) >= 3
    assert "completed" in html and "noise_stats/alpha_pooled" in html
    assert "Diffusion" not in html and "Escape" not in html and "Jobs" not in html  # no data, no section


def test_plain_run_report_is_short(tmp_path):
    train_run(tmp_path, SHORT)
    html = assert_self_contained(build_report(tmp_path))
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Summary", "Training"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real multirun: two learning rates (one diverges) × two seeds, plus a job that died before
    writing anything but Hydra's files."""
    root = tmp_path_factory.mktemp("sweep")
    proc = cli(["-m", "optimizer.lr=0.05,1e6", "seed=0,1", "hydra.sweep.dir=sw", "device=cpu", "logger=none",
                "trainer.progress=false", *SHORT[:3], *STATS], cwd=root)  # 128 units: lr=1e6 diverges
    assert proc.returncode == 0, proc.stderr[-3000:]
    dead = root / "sw" / "4" / ".hydra"
    dead.mkdir(parents=True)
    overrides = (root / "sw" / "0" / ".hydra" / "overrides.yaml").read_text()
    (dead / "overrides.yaml").write_text(overrides.replace("optimizer.lr=0.05", "optimizer.lr=0.2"))
    return root / "sw", proc


def test_sweep_report_lists_every_job_with_mean_and_sd(sweep, capsys):
    path, _ = sweep
    assert report_main([str(path)]) == 0
    assert "report.html" in capsys.readouterr().out
    html = assert_self_contained(path / "report.html")
    kind, runs = find_runs(path)
    assert kind == "sweep" and [r.name for r in runs] == ["0", "1", "2", "3", "4"]
    status = {" ".join(r.overrides[:2]): r.status for r in runs}
    assert status == {"optimizer.lr=0.05 seed=0": "completed", "optimizer.lr=0.05 seed=1": "completed",
                      "optimizer.lr=1000000.0 seed=0": "diverged", "optimizer.lr=1000000.0 seed=1": "diverged",
                      "optimizer.lr=0.2 seed=0": "failed"}
    assert swept_keys(runs) == ["optimizer.lr", "seed"]
    jobs = html.split("<h2>Jobs</h2>")[1].split("</table>")[0]
    assert jobs.count("<tr") == 1 + 5 and jobs.count('class="bad"') == 3  # header + 5 jobs, 3 shaded
    assert "diverged at step" in jobs and ">failed<" in jobs
    assert jobs.count(", evaluated at step 0") == 2  # the diverged jobs' metrics are their step-0 evaluation's
    # mean ± sd over the two seeds of lr=0.05, from the jobs' own summaries
    acc = [r.summary["test/accuracy"] for r in runs if r.overrides[0] == "optimizer.lr=0.05"]
    means = html.split("Mean ± sd over seeds")[1].split("</table>")[0]
    assert f"{np.mean(acc):.4g} ± {np.std(acc, ddof=1):.2g}" in means and "0/2" in means
    assert (path / "figures" / "training.png").is_file() and (path / "figures" / "noise_stats.png").is_file()


def test_sweep_console_lines_are_labelled_and_logs_have_a_header(sweep):
    path, proc = sweep
    out = proc.stdout + proc.stderr
    for job in "0123":
        overrides = " ".join(find_runs(path / job)[1][0].overrides[:2])
        line = next(l for l in out.splitlines() if f"[job {job} {overrides} " in l)
        assert f"outputs in {(path / job).resolve()}" in line and ("completed" in line or "diverged" in line)
    header = (path / "0" / "sgdexp.log").read_text().splitlines()[:4]
    for line, start in zip(header, (f"output directory: {(path / '0').resolve()}", "overrides: optimizer.lr=",
                                    "device: cpu (device=cpu), torch threads: ", "versions: sgdexp ")):
        assert start in line, header
    assert re.search(r"torch threads: [1-9]\d*, seed: 0$", header[2]), header  # the threads that summed its floats


def test_sections_from_other_analyses_appear_where_their_files_are(tmp_path):
    """escape.csv, diffusion/ and curvature/ keys (written by other tasks and analyses) are read by prefix."""
    rows = [{"step": s, "train/loss": 1 / (s + 1), "diffusion/msd_exponent": 1.2 - s / 200,
             "curvature/top_eigenvalue": 5.0 + s / 10, "escape/escaped_fraction": s / 100} for s in range(0, 101, 10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tau = np.arange(1, 33)
    arrays = {"step": 100, "diffusion/lags": tau.tolist(), "diffusion/msd": (0.1 * tau ** 1.5).tolist(),
              "curvature/eigenvalues": [10.0, 5.0, 1.0], "curvature/weight_variance": [0.01, 0.02, 0.1]}
    (tmp_path / "arrays.jsonl").write_text(json.dumps(arrays) + "\n")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "step": 100,
                                                       "diffusion/msd_exponent": 1.5}))
    (tmp_path / "escape.csv").write_text("replica,escaped,step,loss,distance\n0,True,10,1.0,2.0\n"
                                         "1,False,100,0.1,0.5\n2,True,40,1.2,2.5\n")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("noise:\n  name: gd_white\ntask:\n  max_steps: 100\n")
    figures = run_figures(find_runs(tmp_path)[1])
    assert set(figures) >= {"training", "diffusion", "curvature", "escape", "escape_survival", "msd",
                            "variance_vs_curvature"}
    # a run's survival: its noise mode (its overrides were clipped) and the budget line, as the run's own figure
    legend = [t.get_text() for t in figures["escape_survival"].axes[0].get_legend().get_texts()]
    assert legend == ["gd_white (2/3 escaped)", "budget"]
    html = assert_self_contained(build_report(tmp_path))
    assert "Escape survival" in html and "Msd" in html


def test_a_key_logged_once_is_drawn_only_to_compare_jobs(tmp_path):
    """A run that measured curvature once (its end) has no curvature figure, only the number; keys
    with a line are drawn; two such runs side by side are (one point each)."""
    from sgdexp.report.loading import load_run

    for name, top in (("a", 5.0), ("b", 7.0)):
        rows = [{"step": s, "train/loss": 1 / (s + 1), "generalization/weight_norm": 3.0 + s} for s in (0, 50, 100)]
        rows[-1].update({"curvature/top_eigenvalue": top, "curvature/trace": 4 * top})
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": "completed", "step": 100}))
    runs = [load_run(tmp_path / "a"), load_run(tmp_path / "b")]
    alone = run_figures(runs[:1])
    assert "curvature" not in alone and {"training", "generalization"} <= set(alone)
    together = run_figures(runs)
    assert [ax.get_title() for ax in together["curvature"].axes if ax.get_visible()] == [
        "curvature/top_eigenvalue", "curvature/trace"]


def test_diffusion_and_curvature_figures_show_their_headline_keys_first(tmp_path):
    """γ through training, the persistence and the C-H alignment are drawn; the record's width (a
    constant) and the path length are not; a run's MSD legend gives the exponents below → above the
    crossover."""
    keys = ["crossover_step", "dims", "distance_sq", "gamma_early", "gamma_late", "path_length", "persistence",
            "projected", "window_gamma"]
    rows = [{"step": s, **{f"diffusion/{k}": float(i + s) for i, k in enumerate(keys)},
             "curvature/top_eigenvalue": 5.0, "curvature/trace": 20.0, "curvature/trace_se": 1.0,
             "curvature/alignment/proj_cosine": 0.9, "curvature/eigenvalue/top0": 5.0} for s in (100, 200)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tau = np.arange(1, 65, dtype=float)
    msd = np.where(tau <= 8, tau ** 1.5, 8 ** 1.5 * (tau / 8) ** 0.5)  # γ 1.5 below τ = 8, 0.5 above
    (tmp_path / "arrays.jsonl").write_text(json.dumps({"step": 200, "diffusion/tw0/lags": tau.tolist(),
                                                       "diffusion/tw0/msd": msd.tolist()}) + "\n")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "step": 200,
                                                       "diffusion/tw0/crossover_step": 8.0}))
    figures = run_figures(find_runs(tmp_path)[1])
    legend = [t.get_text() for t in figures["msd"].axes[0].get_legend().get_texts()]
    assert legend == ["$t_w$=0: γ 1.50 → 0.50"]  # a run's exponents in its legend, not beside the fits
    assert not figures["msd"].axes[0].texts
    titles = {name: [ax.get_title() for ax in figures[name].axes] for name in ("diffusion", "curvature")}
    assert titles["diffusion"] == [f"diffusion/{k}" for k in ("distance_sq", "window_gamma", "persistence",
                                                              "gamma_early", "gamma_late", "crossover_step")]
    assert titles["curvature"][:3] == ["curvature/top_eigenvalue", "curvature/trace", "curvature/alignment/proj_cosine"]


def test_wandb_flag_offline_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    train_run(tmp_path, SHORT)
    assert f"outputs in {tmp_path.resolve()}" in capsys.readouterr().out  # the Python API says where, too
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert report_main([str(tmp_path), "--wandb"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("sgdexp.report: cannot publish a W&B Report offline")


def test_report_of_nothing_is_one_line(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sgdexp.report: error:")


def fake_job(d, overrides, rows=(), arrays=None, summary=None, escape=None):
    """A job directory as sgdexp writes it: Hydra's overrides, metrics.jsonl, arrays.jsonl,
    summary.json and escape.csv (each only where given)."""
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if rows:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if arrays:
        (d / "arrays.jsonl").write_text(json.dumps(arrays) + "\n")
    if summary:
        (d / "summary.json").write_text(json.dumps(summary))
    if escape:
        (d / "escape.csv").write_text("replica,escaped,step,loss,distance\n"
                                      + "".join(f"{i},{e},{t},1.0,1.0\n" for i, (e, t) in enumerate(escape)))
    return d


LAYERS = ["1.weight", "1.bias", "3.weight"]


@pytest.fixture
def curve_sweep(tmp_path):
    """Batch size 8 and 128 × two seeds with known curves (MSD ∝ τ^γ, γ = 1 for B = 8 and 1.5 for
    B = 128; α per layer falling with the step), one diverged job and one that left only Hydra's files."""
    tau = np.array([1.0, 2, 4, 8, 16, 32])
    for job, (batch, seed) in enumerate([(8, 0), (8, 1), (128, 0), (128, 1)]):
        gamma = 1.0 if batch == 8 else 1.5
        rows = [{"step": s, "train/loss": 2.0 / (s + 1 + seed), "test/loss": 2.1 / (s + 1),
                 "noise_stats/alpha_pooled_standardized": 1.8 - s / 1000,
                 **{f"noise_stats/alpha/{layer}/median": 1.9 - k / 10 - s / 1000 for k, layer in enumerate(LAYERS)},
                 "noise_memory/hurst_whittle/median": 0.5 + batch / 1000,
                 **{f"noise_memory/hurst_whittle/{layer}/median": 0.5 for layer in LAYERS}} for s in range(0, 101, 20)]
        arrays = {"step": 100, "diffusion/tw0/lags": tau.tolist(), "diffusion/tw0/msd": (0.1 * tau ** gamma).tolist(),
                  "diffusion/tw0/gamma_local": [gamma] * 6, "curvature/window_eigenvalues": [4.0, 1.0, 0.1],
                  "curvature/weight_variance": [0.01, 0.02, 0.1 / (job + 1)], "curvature/variance_ratio": [1.0, 0.5, 0.1],
                  "curvature/relaxation_steps": [2.5, 10.0, 100.0], "noise_memory/autocorrelation": [1.0, -0.1, 0.0],
                  "noise_memory/hurst_whittle": [0.4, 0.5, 0.6]}
        fake_job(tmp_path / str(job), [f"noise.batch_size={batch}", f"seed={seed}"], rows, arrays,
                 {"status": "completed", "step": 100}, escape=[(True, 10 * (job + 1)), (False, 100), (True, 50)])
    fake_job(tmp_path / "4", ["noise.batch_size=1024", "seed=0"], [{"step": 0, "train/loss": 3.0}, {"step": 20}],
             summary={"status": "diverged", "step": 20, "diverged_step": 20})
    fake_job(tmp_path / "5", ["noise.batch_size=2048", "seed=0"])
    return tmp_path


def _drawn(ax, marker="o"):
    return [line for line in ax.get_lines() if line.get_marker() == marker]


def test_sweep_overlays_each_jobs_curves_one_colour_per_group(curve_sweep):
    """Every per-run curve of every job in one axes per kind, the jobs that differ only by seed in one
    colour with one legend entry labelled by the swept key; MSD's legend gives the fitted exponents."""
    kind, runs = find_runs(curve_sweep)
    figures = run_figures(runs)
    assert set(figures) >= {"training", "noise_stats", "alpha_through_training", "noise_memory",
                            "hurst_whittle_through_training", "msd", "memory_curves", "variance_vs_curvature",
                            "escape_survival"}
    # training curves: one line per job with data (the diverged one too), one colour per group
    train = figures["training"].axes[0]
    assert train.get_title() == "train/loss" and len(train.get_lines()) == 5
    assert len({line.get_color() for line in train.get_lines()}) == 3
    legend = [t.get_text() for t in figures["training"].legends[0].get_texts()]
    assert legend == ["noise.batch_size=8", "noise.batch_size=128", "noise.batch_size=1024"]
    # per-layer α through training: a panel per layer, a line per job that measured it
    alpha = [ax for ax in figures["alpha_through_training"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in alpha] == LAYERS and all(len(ax.get_lines()) == 4 for ax in alpha)
    np.testing.assert_allclose(alpha[2].get_lines()[0].get_ydata(), [1.7 - s / 1000 for s in range(0, 101, 20)])
    assert "noise_stats/alpha_pooled_standardized" == figures["noise_stats"].axes[0].get_title()
    # MSD: a curve per job, the exponent fitted below and above the crossover in the legend
    msd_axes = figures["msd"].axes[0]
    assert len(_drawn(msd_axes)) == 4 and len({line.get_color() for line in _drawn(msd_axes)}) == 2
    legend = [t.get_text() for t in figures["msd"].legends[0].get_texts()]
    assert legend == ["noise.batch_size=8: γ 1.00 → 1.00", "noise.batch_size=128: γ 1.50 → 1.50"]
    assert len(_drawn(figures["variance_vs_curvature"].axes[1])) == 4
    assert len(figures["memory_curves"].axes[0].get_lines()) == 4 + 1  # four jobs and the zero line
    assert len(figures["memory_curves"].axes[1].containers) == 4  # each job's Hurst median and quartiles
    # survival: a Kaplan-Meier curve per job, a legend entry per group with its escapes
    survival = figures["escape_survival"].axes[0]
    assert len(survival.get_lines()) == 4 and len(survival.collections) == 4
    assert [t.get_text() for t in survival.get_legend().get_texts()] == [
        "noise.batch_size=8 (4/6 escaped, 2 jobs)", "noise.batch_size=128 (4/6 escaped, 2 jobs)"]
    # the report: every figure's section, the failed and diverged jobs in the table, files that exist
    html = assert_self_contained(build_report(curve_sweep))
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert {"Jobs", "Training", "Alpha through training", "Msd", "Escape survival", "Variance vs curvature"} <= set(headings)
    jobs = html.split("<h2>Jobs</h2>")[1].split("</table>")[0]
    assert jobs.count("<tr") == 1 + 6 and jobs.count('class="bad"') == 2
    pngs = sorted((curve_sweep / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == set(figures) and html.count("data:image/png;base64,") == len(pngs)


def test_variance_figure_draws_each_prediction_and_its_ratio(tmp_path):
    """Kühn & Rosenow's figure: the measured variance with the uncorrelated prediction (dashed) and,
    under noise with memory, the correlated one (dotted) and the split one (dash-dotted); the ratios
    against relaxation time as circles, squares and triangles, a legend entry saying which is which.
    A run without the correlated keys gets the first kind alone."""
    eig, var = [4.0, 1.0, 0.1], [0.01, 0.02, 0.05]
    base = {"step": 100, "curvature/window_eigenvalues": eig, "curvature/weight_variance": var,
            "curvature/relaxation_steps": [2.5, 10.0, 100.0], "curvature/variance_ratio": [1.0, 0.5, 0.1]}
    fake_job(tmp_path / "epoch", ["noise.sampler=epoch"], arrays={**base, "curvature/variance_ratio_correlated": [1.0, 0.9, 1.1],
                                                                  "curvature/variance_ratio_split": [1.0, 1.0, 0.5]})
    kind, runs = find_runs(tmp_path / "epoch")
    fig = run_figures(runs)["variance_vs_curvature"]
    variance, ratio = fig.axes[:2]
    dashed = [l for l in variance.get_lines() if l.get_linestyle() == "--"]
    dotted = [l for l in variance.get_lines() if l.get_linestyle() == ":"]
    dash_dotted = [l for l in variance.get_lines() if l.get_linestyle() == "-."]
    assert len(dashed) == len(dotted) == len(dash_dotted) == 1
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.05 / 0.1, 0.02 / 0.5, 0.01 / 1.0])  # ascending λ
    np.testing.assert_allclose(dotted[0].get_ydata(), [0.05 / 1.1, 0.02 / 0.9, 0.01 / 1.0])
    np.testing.assert_allclose(dash_dotted[0].get_ydata(), [0.05 / 0.5, 0.02 / 1.0, 0.01 / 1.0])
    circles, squares, triangles = ([l for l in _drawn(ratio, m) if len(l.get_xdata())] for m in "os^")
    assert len(circles) == len(squares) == len(triangles) == 1
    np.testing.assert_allclose(circles[0].get_ydata(), [1.0, 0.5, 0.1])
    np.testing.assert_allclose(squares[0].get_ydata(), [1.0, 0.9, 1.1])
    np.testing.assert_allclose(triangles[0].get_ydata(), [1.0, 1.0, 0.5])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "uncorrelated noise", "the noise's memory", "memory, moving part uncorrelated"]
    assert [(h.get_linestyle(), h.get_marker()) for h in legend.legend_handles] == [("--", "o"), (":", "s"), ("-.", "^")]
    assert variance.get_title() == "weight variance against curvature"
    fake_job(tmp_path / "replacement", ["noise.sampler=replacement"], arrays=base)
    fig = run_figures(find_runs(tmp_path / "replacement")[1])["variance_vs_curvature"]
    assert not [l for l in fig.axes[0].get_lines() if l.get_linestyle() == ":"]
    assert fig.axes[0].get_title() == "weight variance against curvature (dashed: uncorrelated noise)"
    assert len(_drawn(fig.axes[1])) == 1 and not _drawn(fig.axes[1], "s") and not fig.legends


def test_a_large_sweep_is_drawn_as_small_multiples(tmp_path):
    """More than MAX_LINES groups: one panel per value of the swept key that leaves the fewest panels
    (each at most MAX_LINES groups), else chunks of groups; each figure's section keeps its heading."""
    from sgdexp.report.build import figure_files
    from sgdexp.report.figures import MAX_LINES, panels
    from sgdexp.report.loading import load_run

    jobs = []
    for job, (lr, batch) in enumerate((lr, b) for lr in (0.01, 0.1, 1.0) for b in (2, 4, 8, 16, 32)):
        rows = [{"step": s, "train/loss": lr * batch / (s + 1)} for s in (0, 10, 20)]
        jobs.append(load_run(fake_job(tmp_path / "grid" / str(job), [f"optimizer.lr={lr}", f"noise.batch_size={batch}"],
                                      rows, summary={"status": "completed", "step": 20})))
    split = panels(jobs, max_lines=12)
    assert [title for title, _ in split] == ["optimizer.lr=0.01", "optimizer.lr=0.1", "optimizer.lr=1.0"]
    assert [len(members) for _, members in split] == [5, 5, 5]
    assert [title for title, _ in panels(jobs, max_lines=4)] == [f"noise.batch_size={b}" for b in (2, 4, 8, 16, 32)]
    chunks = panels(jobs, max_lines=2)  # no key leaves two groups or fewer per panel
    assert [title for title, _ in chunks] == [f"settings {i}–{i + 1} of 15" for i in range(1, 14, 2)] + ["setting 15 of 15"]
    assert [r.name for _, members in chunks for r in members] == [r.name for r in jobs]
    assert panels(jobs[:MAX_LINES]) == [("", jobs[:MAX_LINES])]
    files = figure_files(jobs, tmp_path / "figs")
    assert [panel for panel, _ in files["training"]] == [title for title, _ in split]
    for (_, members), (_, png) in zip(split, files["training"]):
        assert png.is_file()
    fig = run_figures(split[0][1])["training"]
    assert len(fig.axes[0].get_lines()) == 5 and len(fig.legends[0].get_texts()) == 5
    html = assert_self_contained(build_report(tmp_path / "grid"))
    assert html.count("<h2>Training</h2>") == 1 and html.count("<h3>optimizer.lr=") == 3


def test_an_escape_runs_chunk_number_is_not_drawn_as_a_measurement(tmp_path):
    from sgdexp.report.figures import section_keys

    rows = [{"step": s, "escape/inside": 8 - s // 10, "escape/chunk": s // 40} for s in range(10, 81, 10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert section_keys(find_runs(tmp_path)[1], "escape/") == ["escape/inside"]


def test_an_escape_runs_inside_count_is_not_joined_across_replica_chunks(tmp_path):
    # each chunk counts its own replicas from the start: a line through all rows drew a ramp from one
    # chunk's last count up to the next chunk's first
    from sgdexp.report.figures import section_scalars

    rows = [{"step": s, "escape/inside": 8 - (s % 40) // 10, "escape/chunk": s // 40} for s in range(10, 120, 10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    fig = section_scalars(find_runs(tmp_path)[1], "escape/", "Escape")
    (line,) = fig.axes[0].get_lines()
    y = np.asarray(line.get_ydata(), float)
    gaps = np.flatnonzero(np.isnan(y))
    assert list(np.asarray(line.get_xdata())[gaps]) == [40, 80]  # a gap where chunks 1 and 2 begin
    assert list(y[~np.isnan(y)]) == [r["escape/inside"] for r in rows]
