"""A sweep's generalization section: Kendall's τ of each measure with the gap (over all jobs and
within each swept key), checked against τ_b computed from its definition on a sweep with known
values; the report, the figure and the W&B Report show it; a run's report lists its keys."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import assert_self_contained, train_run
from sgdexp.report import build_report
from sgdexp.report.generalization import (BATCH_OVER_LR, LOSS_GAP, correlation_table, generalization_figure,
                                          rank_correlations)
from sgdexp.report.loading import find_runs
from test_report import fake_job

TOP = "generalization/top_eigenvalue"
BATCHES, LRS, SEEDS = (8, 32, 128, 512), (0.02, 0.1), (0, 1)


def kendall_tau_b(x, y) -> float:
    """τ_b from its definition: (concordant − discordant pairs) / √((pairs − ties in x)(pairs − ties in y))."""
    s = pairs = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        s, pairs = s + dx * dy, pairs + 1
        ties_x, ties_y = ties_x + (dx == 0), ties_y + (dy == 0)
    return s / math.sqrt((pairs - ties_x) * (pairs - ties_y))


def values(batch: int, lr: float, seed: int) -> dict:
    """Sharpness grows with B/η; the gap grows with B but is larger at the larger learning rate (as
    on digits at a fixed number of steps, where the larger rate fits further): over all jobs the
    two disagree in part, within a batch-size sweep they agree, within a learning-rate sweep not."""
    return {TOP: math.log(batch / lr) + 0.01 * seed,
            LOSS_GAP: 0.05 + 0.04 * (lr == 0.1) + 0.002 * math.log2(batch) + 0.001 * seed,
            "generalization/trace": 5 * math.log(batch / lr),
            "generalization/weight_norm": 10.0 + lr}


@pytest.fixture
def generalization_sweep(tmp_path):
    """16 completed jobs (B × η × seed) with known generalization values and their configs, one
    diverged job whose values must not count, and one that left nothing."""
    for job, (batch, lr, seed) in enumerate(itertools.product(BATCHES, LRS, SEEDS)):
        stopped = {"stopped_at_step": 100} if job == 3 else {}  # ended by trainer.stop_at_train_loss
        d = fake_job(tmp_path / str(job), [f"noise.batch_size={batch}", f"optimizer.lr={lr}", f"seed={seed}"],
                     summary={"status": "completed", "step": 100, **stopped, **values(batch, lr, seed)})
        (d / ".hydra" / "config.yaml").write_text(f"noise:\n  batch_size: {batch}\noptimizer:\n  lr: {lr}\n")
    fake_job(tmp_path / "16", ["noise.batch_size=4096", "optimizer.lr=0.1", "seed=0"],
             summary={"status": "diverged", "step": 20, TOP: 1e9, LOSS_GAP: -1.0})
    fake_job(tmp_path / "17", ["noise.batch_size=8192", "optimizer.lr=0.1", "seed=0"])
    return tmp_path


def test_kendall_tau_over_the_sweep_and_within_each_swept_key(generalization_sweep):
    _, runs = find_runs(generalization_sweep)
    taus = {(r.x, r.y): r for r in rank_correlations(runs)}
    jobs = [values(b, lr, s) for b, lr, s in itertools.product(BATCHES, LRS, SEEDS)]
    ratio = [b / lr for b, lr, _ in itertools.product(BATCHES, LRS, SEEDS)]
    sharp, gap = [j[TOP] for j in jobs], [j[LOSS_GAP] for j in jobs]

    # over the 16 completed jobs (the diverged one left out), τ_b as defined, ties in B/η included
    top_gap = taus[(TOP, LOSS_GAP)]
    assert top_gap.jobs == 16
    assert top_gap.tau == pytest.approx(kendall_tau_b(sharp, gap), abs=1e-12)
    assert taus[(BATCH_OVER_LR, TOP)].tau == pytest.approx(kendall_tau_b(ratio, sharp), abs=1e-12) == math.sqrt(112 / 120)
    assert taus[(BATCH_OVER_LR, TOP)].p < 1e-4
    # within the batch size (η and seed fixed: 4 groups of 4 jobs) sharper means a larger gap;
    # within the learning rate (B and seed fixed: 8 groups of 2) the opposite; the seed is no key of its own
    assert top_gap.within == {"noise.batch_size": (1.0, 4), "optimizer.lr": (-1.0, 8)}
    # no accuracy in these jobs: no pair with the accuracy gap; a measure with one value only
    # within a group gives no τ there (weight norm is fixed by η: nothing within the batch size)
    assert not any(y.endswith("accuracy_gap") for _, y in taus)
    assert taus[("generalization/weight_norm", LOSS_GAP)].within == {"optimizer.lr": (1.0, 8)}
    # the figure: the loss gap against each measure and sharpness against B/η, one point per job
    fig = generalization_figure(runs, rank_correlations(runs))
    assert len(fig.axes) >= 5
    titled = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel() == "B/η" and ax.get_ylabel() == "top Hessian eigenvalue"]
    assert len(titled) == 1 and "+0.97" in titled[0].get_title() and "16 jobs" in titled[0].get_title()
    assert sum(len(line.get_xdata()) for line in titled[0].get_lines()) == 16


def test_sweep_report_has_the_generalization_section(generalization_sweep):
    html = assert_self_contained(build_report(generalization_sweep))
    jobs = html.split("<h2>Jobs</h2>")[1].split("</table>")[0]
    assert jobs.count("reached trainer.stop_at_train_loss at step 100") == 1
    section = html.split("<h2>Generalization across the sweep</h2>")[1].split("<h2>")[0]
    assert (generalization_sweep / "figures" / "generalization_vs_sharpness.png").is_file()
    assert section.count("data:image/png;base64,") == 1
    # one job ended at trainer.stop_at_train_loss, the others ran all their steps: not at equal fit
    assert "Not at equal fit: jobs 0, 1, 2, 4, 5," in section
    settings, taus = section.split("</table>")[:2]
    # per setting, mean ± sd over the two seeds; the diverged and the dead job's settings count 0 completed
    assert settings.count("<tr>") == 1 + 10 and settings.count("2/2") == 8 and settings.count("0/1") == 2
    gap = np.array([values(8, 0.02, s)[LOSS_GAP] for s in SEEDS])
    assert f"{gap.mean():.4g} ± {gap.std(ddof=1):.2g}" in settings.split("noise.batch_size=8 optimizer.lr=0.02")[1]
    # then the τ table, a row per pair, with its granulated columns
    columns, rows = correlation_table(rank_correlations(find_runs(generalization_sweep)[1]))
    assert columns == ["x", "y", "Kendall τ", "p-value", "jobs", "τ within noise.batch_size (groups)",
                       "τ within optimizer.lr (groups)"]
    assert taus.count("<tr>") == 1 + len(rows) and "+1.00 (4)" in taus and "-1.00 (8)" in taus


def test_a_sweep_without_generalization_has_no_section(tmp_path):
    for job, lr in enumerate((0.1, 0.2, 0.3)):
        fake_job(tmp_path / str(job), [f"optimizer.lr={lr}"], [{"step": 0, "train/loss": lr}],
                 summary={"status": "completed", "step": 0})
    html = assert_self_contained(build_report(tmp_path))
    assert "Generalization" not in html


def test_wandb_report_has_the_correlations_and_scatter_plots(generalization_sweep, monkeypatch):
    import wandb_workspaces.reports.v2 as wr

    from sgdexp.report import wandb_report

    # building the Report needs no network when the entity is known (the config's logger.entity)
    monkeypatch.setattr(wandb_report, "_project", lambda run: ("sgdexp", "someone"))
    report = wandb_report.report_spec(generalization_sweep)
    headings = [b.text for b in report.blocks if isinstance(b, wr.H1)]
    assert headings == ["Jobs", "Generalization across the sweep"]
    table = report.blocks[4].text
    assert table.startswith("| x | y | Kendall τ |") and "+1.00 (4)" in table
    scatter = report.blocks[5].panels
    assert {p.x.name for p in scatter} == {TOP, "generalization/trace", "generalization/weight_norm"}
    assert {p.y.name for p in scatter} == {LOSS_GAP}


def test_run_report_lists_the_generalization_keys(tmp_path):
    summary = train_run(tmp_path, ["trainer.steps=30", "trainer.eval_every=10", "model.widths=[16]",
                                   "analysis=[generalization]", "analysis.generalization.every=10"])
    html = assert_self_contained(build_report(tmp_path))
    listed = html.split("<h2>Summary</h2>")[1].split("</table>")[0]
    for key in ("loss_gap", "accuracy_gap", "top_eigenvalue", "trace", "distance_from_init", "weight_norm"):
        assert f"generalization/{key}" in listed and f"generalization/{key}" in summary
    assert "<h2>Generalization</h2>" in html and (tmp_path / "report_figures" / "generalization.png").is_file()


@pytest.mark.slow
def test_digits_at_equal_fit_sharper_minima_have_the_larger_gap(tmp_path):
    """README's sweep (6 min): B ∈ {8, 32, 128, 512} × η ∈ {0.02, 0.1} × 2 seeds, each run ending at
    train loss 0.01. A larger B/η ends sharper, and at equal fit the sharper minima have the larger
    loss gap, across the sweep and across batch sizes with η and the seed fixed."""
    from conftest import cli

    proc = cli(["-m", "analysis=[generalization]", "noise.batch_size=8,32,128,512", "optimizer.lr=0.02,0.1",
                "seed=0,1", "trainer.steps=20000", "trainer.eval_every=50", "trainer.stop_at_train_loss=0.01",
                "hydra.sweep.dir=sweep", "logger=none", "device=cpu", "trainer.progress=false"], cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, runs = find_runs(tmp_path / "sweep")
    assert len(runs) == 16 and all("stopped_at_step" in r.summary for r in runs)
    taus = {(r.x, r.y): r for r in rank_correlations(runs)}
    print({k: (round(r.tau, 2), r.within) for k, r in taus.items()})
    sharp = taus[(BATCH_OVER_LR, TOP)]
    assert sharp.tau > 0.8 and sharp.p < 1e-4  # measured: +0.91, p = 1.5e-6
    gap = taus[(TOP, LOSS_GAP)]
    assert gap.tau > 0.3 and gap.p < 0.05 and gap.within["noise.batch_size"][0] > 0.5  # +0.50, p = 0.006; +0.83
