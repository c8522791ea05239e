"""Sweep-level escape fits on a fabricated Hydra multirun directory; survival and fit figures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sgdexp.escape_sweeps import fit_table, fits_figure, survival_figure, sweep_fits
from sgdexp.plotting import save_figure
from sgdexp.stats.survival import escape_time_summary, kaplan_meier


def _job(root: Path, num: int, noise: dict, lr: float, summary=None) -> None:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"noise": noise, "optimizer": {"name": "sgd", "lr": lr}, "seed": 0}),
                   job / ".hydra" / "config.yaml")
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))


def _escape_summary(mean: float, sharp: float = 2.0, **extra) -> dict:
    return {"status": "completed", "escape/mean_steps": mean, "escape/mean_steps_low": 0.8 * mean,
            "escape/mean_steps_high": 1.25 * mean, "escape/lower_bound": 0.0,
            "sharpness/top_eigenvalue": sharp, **extra}


def test_sgd_sweep_fits_log_mean_against_batch_over_lr(tmp_path):
    """ln T = 1.5 + 0.02·B/η exactly over 5 jobs (B ∈ 8..128, η = 0.1 or 0.2); the lower-bound,
    failed and unfinished jobs are excluded with their reasons and change nothing."""
    pairs = [(8, 0.1), (16, 0.1), (32, 0.2), (64, 0.2), (128, 0.4)]
    for i, (b, lr) in enumerate(pairs):
        _job(tmp_path, i, {"name": "sgd", "batch_size": b}, lr, _escape_summary(math.exp(1.5 + 0.02 * b / lr)))
    _job(tmp_path, 5, {"name": "sgd", "batch_size": 256}, 0.1,
         {**_escape_summary(float("nan")), "escape/lower_bound": 1.0, "escape/mean_steps_low": 5000.0})
    _job(tmp_path, 6, {"name": "sgd", "batch_size": 4}, 0.1, {"status": "failed"})
    _job(tmp_path, 7, {"name": "sgd", "batch_size": 2}, 0.1, None)

    sweep = sweep_fits(tmp_path)
    assert [j.job for j in sweep.jobs] == ["0", "1", "2", "3", "4"]
    assert set(sweep.excluded) == {"5", "6", "7"}
    assert "lower bound" in sweep.excluded["5"] and "failed" in sweep.excluded["6"] and "summary" in sweep.excluded["7"]
    assert [j.job for j in sweep.lower_bounds] == ["5"]
    # only B/η varies 3+ ways: one sharpness, no σ, H or α
    assert set(sweep.fits) == {"batch_over_lr"}
    fit = sweep.fits["batch_over_lr"]
    assert fit.slope == pytest.approx(0.02) and fit.intercept == pytest.approx(1.5)
    assert fit.r2 == pytest.approx(1.0) and fit.n == 5
    columns, rows = fit_table(sweep)
    assert columns[0] == "x" and rows[0][0] == "batch_over_lr" and rows[0][1] == pytest.approx(0.02)

    fig = fits_figure(sweep)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "B / η"
    assert save_figure(fig, tmp_path / "fits.png").stat().st_size > 0


def test_matched_sigma_sharpness_hurst_and_alpha(tmp_path):
    """σ from the summary when noise.sigma=matched; sharpness, H and α fitted when they vary."""
    sigmas = [0.5, 0.4, 0.3, 0.25]
    for i, s in enumerate(sigmas):
        key = "noise/sigma" if i % 2 else "escape/sigma"  # either key the tasks write
        _job(tmp_path / "white", i, {"name": "gd_white", "batch_size": 32, "sigma": "matched"}, 0.1,
             _escape_summary(math.exp(0.5 + 0.1 / s ** 2), sharp=1.0 + i, **{key: s}))
    white = sweep_fits(tmp_path / "white")
    assert set(white.fits) == {"inverse_sigma_sq", "inverse_sharpness"}
    assert white.fits["inverse_sigma_sq"].slope == pytest.approx(0.1)
    assert white.fits["inverse_sigma_sq"].intercept == pytest.approx(0.5)

    for i, h in enumerate([0.3, 0.5, 0.7]):
        _job(tmp_path / "fbm", i, {"name": "gd_fbm", "batch_size": 32, "sigma": 0.3, "hurst": h}, 0.1,
             _escape_summary(math.exp(4 - 2 * h)))
    for i, a in enumerate([1.2, 1.6, 2.0]):
        _job(tmp_path / "levy", i, {"name": "gd_levy", "batch_size": 32, "sigma": 0.3, "alpha": a}, 0.1,
             _escape_summary(math.exp(1 + a)))
    assert set(sweep_fits(tmp_path / "fbm").fits) == {"hurst"}
    assert sweep_fits(tmp_path / "fbm").fits["hurst"].slope == pytest.approx(-2)
    assert sweep_fits(tmp_path / "levy").fits["alpha"].slope == pytest.approx(1)
    # nested layout (multirun/<date>/<time>/<num>): found through the whole tree
    assert len(sweep_fits(tmp_path).jobs) == 10
    # one multirun over several modes: a fit per mode
    only_fbm = sweep_fits(tmp_path, select={"noise.name": "gd_fbm"})
    assert len(only_fbm.jobs) == 3 and set(only_fbm.fits) == {"hurst"}
    assert only_fbm.excluded["white/0"] == "not selected: noise.name=gd_white"


def test_survival_figure_draws_each_curve_with_its_band(tmp_path):
    rng = np.random.default_rng(0)
    curves = {}
    for label, mean in (("sharp", 50.0), ("flat", 200.0)):
        t = rng.exponential(mean, 100)
        curves[label] = kaplan_meier(np.minimum(t, 300), t <= 300)
    fig = survival_figure(curves, budget=300)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["sharp", "flat"]
    assert len(ax.collections) == 2  # the two Greenwood bands
    assert save_figure(fig, tmp_path / "survival.png").stat().st_size > 0
    summary = escape_time_summary(np.minimum(t, 300), t <= 300, 300)
    assert summary["lower_bound"] == 0.0


def test_missing_directory_and_empty_sweep(tmp_path):
    with pytest.raises(FileNotFoundError):
        sweep_fits(tmp_path / "nope")
    sweep = sweep_fits(tmp_path)
    assert sweep.fits == {} and sweep.jobs == []
    assert len(fits_figure(sweep).axes) == 1


def test_one_line_per_group_of_what_else_the_sweep_varies(tmp_path):
    """noise × minimum × B: ln τ against B/η per mode and minimum, against 1/sharpness per mode and B."""
    num = 0
    for mode, a in (("sgd", 0.05), ("gd_white", 0.01)):
        for pretrain_lr, sharp in ((0.4, 4.0), (0.6, 3.0), (0.8, 2.5)):
            for b in (10, 12, 14):
                mean = math.exp(a * b / 0.4 + 3.0 / sharp)
                _job(tmp_path, num, {"name": mode, "batch_size": b}, 0.4, _escape_summary(mean, sharp=sharp))
                overrides = [f"noise={mode}", f"task.pretrain_lr={pretrain_lr}", f"noise.batch_size={b}", "experiment=x"]
                OmegaConf.save(OmegaConf.create(overrides), tmp_path / str(num) / ".hydra" / "overrides.yaml")
                num += 1
    sweep = sweep_fits(tmp_path)
    by_lr = {k: f for k, f in sweep.fits.items() if k.startswith("batch_over_lr")}
    assert len(by_lr) == 6 and "batch_over_lr | noise=sgd task.pretrain_lr=0.8" in by_lr
    for name, fit in by_lr.items():
        assert fit.slope == pytest.approx(0.05 if "noise=sgd " in name else 0.01) and fit.n == 3
    by_sharp = {k: f for k, f in sweep.fits.items() if k.startswith("inverse_sharpness")}
    assert len(by_sharp) == 6 and "inverse_sharpness | noise=gd_white noise.batch_size=12" in by_sharp
    assert all(f.slope == pytest.approx(3.0) for f in by_sharp.values())
    assert len(sweep.members["inverse_sharpness | noise=sgd noise.batch_size=10"]) == 3
    fig = fits_figure(sweep)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().get_texts()) == 6


def test_the_report_and_the_fits_read_the_same_jobs(tmp_path):
    """One reader of multirun directories (`report.loading.job_dirs`): jobs in job-number order (10
    after 9), at any depth, an escape job's `pretrain/` run part of its job, hidden folders skipped;
    the report's job table and `sweep_fits` list the same jobs."""
    from sgdexp.report.loading import find_runs, job_dirs

    for num in range(11):
        _job(tmp_path, num, {"name": "sgd", "batch_size": 4 + num}, 0.5, _escape_summary(math.exp(0.1 * num)))
        OmegaConf.save(OmegaConf.create([f"noise.batch_size={4 + num}"]), tmp_path / str(num) / ".hydra" / "overrides.yaml")
    pretrain = tmp_path / "3" / "pretrain"
    (pretrain / ".hydra").mkdir(parents=True)
    (pretrain / "summary.json").write_text(json.dumps({"status": "completed"}))
    _job(tmp_path / "more", 0, {"name": "sgd", "batch_size": 100}, 0.5)  # a sweep inside the sweep, still running
    (tmp_path / ".submitit" / "0").mkdir(parents=True)
    (tmp_path / ".submitit" / "0" / "summary.json").write_text("{}")

    names = [str(p.relative_to(tmp_path)) for p in job_dirs(tmp_path)]
    assert names == [str(n) for n in range(11)] + ["more/0"]
    kind, runs = find_runs(tmp_path)
    assert kind == "sweep" and [str(r.path.relative_to(tmp_path)) for r in runs] == names
    sweep = sweep_fits(tmp_path)
    assert [j.job for j in sweep.jobs] == names[:11] and list(sweep.excluded) == ["more/0"]
    assert sweep.fits["batch_over_lr"].slope == pytest.approx(0.1 * 0.5) and sweep.fits["batch_over_lr"].n == 11


def test_sigma_set_by_hand_fits_each_learning_rate_apart_and_a_torn_summary_is_left_out(tmp_path):
    # with σ given, ln τ ∝ 1/(η σ²): pooling η = 0.02 and 0.03 into one line mixed two temperatures
    num = 0
    for lr in (0.02, 0.03):
        for s in (5.0, 7.0, 9.0):
            _job(tmp_path, num, {"name": "gd_white", "batch_size": 32, "sigma": s}, lr,
                 _escape_summary(math.exp(1.0 + 2.0 / (lr * s ** 2))))
            OmegaConf.save(OmegaConf.create([f"noise.sigma={s}", f"optimizer.lr={lr}"]),
                           tmp_path / str(num) / ".hydra" / "overrides.yaml")
            num += 1
    _job(tmp_path, num, {"name": "gd_white", "batch_size": 32, "sigma": 5.0}, 0.02)
    (tmp_path / str(num) / "summary.json").write_text('{"status": "compl')  # killed while writing
    sweep = sweep_fits(tmp_path)
    assert sweep.excluded[str(num)] == "summary.json unreadable (empty or torn)"
    by_sigma = {k: f for k, f in sweep.fits.items() if k.startswith("inverse_sigma_sq")}
    assert set(by_sigma) == {"inverse_sigma_sq | optimizer.lr=0.02", "inverse_sigma_sq | optimizer.lr=0.03"}
    for name, fit in by_sigma.items():
        assert fit.slope == pytest.approx(2.0 / float(name.rsplit("=", 1)[1])) and fit.n == 3
