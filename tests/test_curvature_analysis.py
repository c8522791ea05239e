"""`analysis=[curvature]` and `analysis=[generalization]`: against known answers, and they never
change the training.

The stationary-variance checks run SGD on linear regression with a chosen Hessian spectrum
(`dataset=linear_gaussian`), where the uncorrelated-noise prediction is exact for small η."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import kill_after_checkpoint, train_run
from sgdexp.tracking import read_metrics


def linear_overrides(sampler: str, momentum: float, lr: float, burn_in: int, window: int, extra=(),
                     analysed: bool = True) -> list:
    """Linear regression (bias off: the Hessian is 2Σ exactly) measured once after `burn_in` steps
    over a window of `window` updates; every eigendirection (dense Hessian). `analysed=False`: the
    same run without the analysis."""
    overrides = ["dataset=linear_gaussian", "model=linear", "model.bias=false", "noise.batch_size=16",
                 f"noise.sampler={sampler}", f"optimizer.lr={lr}", f"optimizer.momentum={momentum}",
                 f"trainer.steps={burn_in + window}", "trainer.eval_every=0", "trainer.log_every=1000",
                 "trainer.checkpoint_every=0"]
    if analysed:
        overrides += ["analysis=[curvature]", f"analysis.curvature.start={burn_in}",
                      f"analysis.curvature.every={window + 1}", f"analysis.curvature.window={window}",
                      "analysis.curvature.top_k=64", "analysis.curvature.noise_samples=0"]
    return overrides + list(extra)  # last: an override of the same key wins


def linear_run(tmp_path, sampler: str, momentum: float, lr: float, burn_in: int, window: int, extra=(),
               analysed: bool = True) -> dict:
    """`linear_overrides` run in a directory of `tmp_path`; returns summary.json."""
    overrides = linear_overrides(sampler, momentum, lr, burn_in, window, extra, analysed)
    return train_run(tmp_path / f"{sampler}-{momentum}{'' if analysed else '-plain'}", overrides)


def per_direction(summary: dict, key: str) -> np.ndarray:
    """`curvature/<key>/top<i>` for every direction, eigenvalues descending."""
    count = len([k for k in summary if k.startswith("curvature/eigenvalue/top")])
    return np.array([summary[f"curvature/{key}/top{i}"] for i in range(count)])


def directions(summary: dict):
    """(eigenvalue, relaxation steps, measured/predicted ratio) per direction, as arrays."""
    return tuple(per_direction(summary, key) for key in ("eigenvalue", "relaxation_steps", "variance_ratio"))


def variance_rel_se(tau: np.ndarray, window: int) -> np.ndarray:
    """Relative standard error of the sample variance of an AR(1) series with relaxation time τ over
    `window` steps: √(2(1+ρ²)/(T(1−ρ²))), ρ = 1 − 1/τ (momentum: τ its slow mode's, an approximation)."""
    rho = np.clip(1 - 1 / tau, 0, 1 - 1e-12)
    return np.sqrt(2 * (1 + rho**2) / (window * (1 - rho**2)))


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_replacement_variance_matches_uncorrelated_prediction(tmp_path, momentum):
    # κ = 4 over 8 directions: ηλ from 0.8 to 0.2 (relaxation 1.25 to 5 steps)
    window = 5000
    summary = linear_run(tmp_path, "replacement", momentum, 0.4 * (1 - momentum), 200, window,
                         ["dataset.dim=8", "dataset.condition_number=4", "analysis.curvature.noise_points=20"])
    lam, tau, ratio = directions(summary)
    assert len(lam) == 8 and np.all(np.isfinite(ratio))
    fast = variance_rel_se(tau, window) < 1 / 30  # 10% is ≥ 3 standard errors of the measured variance
    assert fast.sum() >= 3
    assert np.allclose(ratio[fast], 1.0, atol=0.1), (tau, ratio)


@pytest.mark.parametrize("noise", ["gd_white", "gd_anticorrelated"])
def test_injected_noise_variance_matches_its_prediction(tmp_path, noise):
    # GD plus noise σζ independent of the weights: the linear system of the prediction, exactly.
    # ζ_t = w_t − w_{t−1} sums to zero over time, so along each direction the variance is ηλ times that
    # of uncorrelated noise of its variance 2σ² (stats.correlated_stationary_variance: 2η²σ²/(2 − ηλ))
    window, lr = 5000, 0.4
    summary = linear_run(tmp_path, "epoch", 0.0, lr, 200, window,
                         ["dataset.dim=8", "dataset.condition_number=4", f"noise={noise}", "noise.sigma=0.1"])
    lam, tau, ratio = directions(summary)
    fast = variance_rel_se(tau, window) < 1 / 30
    assert fast.sum() >= 3
    assert np.allclose([summary[f"curvature/noise_variance/top{i}"] for i in range(8)],
                       0.01 * (2 if noise == "gd_anticorrelated" else 1))
    correlated = [k for k in summary if k.startswith("curvature/variance_ratio_correlated/")]
    if noise == "gd_white":
        assert np.allclose(ratio[fast], 1.0, atol=0.1) and not correlated, (tau, ratio)
    else:
        assert np.allclose(ratio[fast], lr * lam[fast], rtol=0.1), (ratio, lr * lam)
        ratio_correlated = np.array([summary[f"curvature/variance_ratio_correlated/top{i}"] for i in range(8)])
        assert np.allclose(ratio_correlated[fast], 1.0, atol=0.1), ratio_correlated


def test_no_prediction_without_noise_of_finite_variance(tmp_path):
    summary = linear_run(tmp_path, "epoch", 0.0, 0.4, 10, 30, ["dataset.dim=4", "noise=gd"])
    assert "curvature/weight_variance/top0" in summary
    assert not [k for k in summary if "predicted" in k or "variance_ratio" in k or "noise_variance" in k]


# The window's updates are those of steps 11..40 of 40, which take the factors of 0-based steps 10..39
COSINE_WINDOW_FACTOR = np.mean(0.5 * (1 + np.cos(np.pi * np.arange(10, 40) / 40)))
WARMUP_WINDOW_FACTOR = np.mean(np.minimum((np.arange(10, 40) + 1) / 20, 1.0))


@pytest.mark.parametrize("schedule, factor", [(["trainer.lr_schedule=cosine"], COSINE_WINDOW_FACTOR),
                                              (["trainer.warmup_steps=20"], WARMUP_WINDOW_FACTOR)],
                         ids=["cosine", "warmup"])
def test_no_prediction_under_a_learning_rate_schedule(tmp_path, schedule, factor):
    """The stationary variance is that of one learning rate: under a schedule the ratio would read the
    lag of the weights' variance behind the rate (at half the rate, a cosine run's ratios were 0.21-0.41
    where a constant rate's were 0.64-1.47), so the prediction is left out and the rest measured. The
    relaxation times are those of the rate the window's updates took: 1/(η λ) at their mean η."""
    summary = linear_run(tmp_path, "replacement", 0.0, 0.4, 10, 30, ["dataset.dim=4", *schedule])
    assert all(f"curvature/{key}/top0" in summary for key in ("eigenvalue", "weight_variance", "noise_variance"))
    assert not [k for k in summary if "predicted" in k or "variance_ratio" in k]
    lam, tau = per_direction(summary, "eigenvalue"), per_direction(summary, "relaxation_steps")
    assert factor < 0.95 and np.allclose(tau, 1 / (0.4 * factor * lam), rtol=1e-9)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_epoch_sampling_shrinks_variance_along_slow_directions(tmp_path, momentum):
    # κ = 1000 over 16 directions: relaxation 2.6 to 2800 steps at N/B = 32 steps per epoch
    window, burn_in, epoch = 30_000, 8_000, 512 // 16
    lr = 0.2 * (1 - momentum)
    extra = ["dataset.n_train=512", "dataset.condition_number=1000", "analysis.curvature.noise_points=20"]
    lam, tau, ratio = directions(linear_run(tmp_path, "epoch", momentum, lr, burn_in, window, extra))
    _, tau_r, ratio_r = directions(linear_run(tmp_path, "replacement", momentum, lr, burn_in, window, extra))
    print("relaxation steps / ratio epoch / ratio replacement:")
    for t, r, rr in zip(tau, ratio, ratio_r):
        print(f"  {t:8.1f} ({t / epoch:6.2f} epochs)  {r:8.4f}  {rr:8.4f}")
    fast_r = variance_rel_se(tau_r, window) < 1 / 30
    assert fast_r.sum() >= 2 and np.allclose(ratio_r[fast_r], 1.0, atol=0.1)
    fast = tau < epoch / 10  # relaxes within a tenth of an epoch
    assert fast.sum() >= 1 and np.allclose(ratio[fast], 1.0, atol=0.2)
    slow = (tau > 10 * epoch) & (tau < window / 10)  # tens of epochs, yet many relaxations in the window
    assert slow.sum() >= 2 and np.all(ratio[slow] < 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_epoch_sampling_variance_matches_correlated_prediction(tmp_path, momentum):
    # Kühn & Rosenow's prediction: the stationary variance for the epoch noise's own anti-correlation
    # (stats.correlated_stationary_variance with epoch_noise_autocorrelation), on linear regression at
    # η_eff = 0.05 (at 0.2 the noise's dependence on the weights, which the prediction leaves out,
    # shows along directions slower than ~10 epochs: ratios 1.5-2)
    window, burn_in, epoch = 40_000, 20_000, 512 // 16
    extra = ["dataset.n_train=512", "dataset.condition_number=1000", "analysis.curvature.noise_points=20"]
    summary = linear_run(tmp_path, "epoch", momentum, 0.05 * (1 - momentum), burn_in, window, extra)
    lam, tau, ratio = directions(summary)
    labels = [f"top{i}" for i in range(len(lam))]
    correlated = np.array([summary[f"curvature/variance_ratio_correlated/{k}"] for k in labels])
    print("relaxation steps / ratio to uncorrelated / ratio to correlated prediction:")
    for t, r, c in zip(tau, ratio, correlated):
        print(f"  {t:8.1f} ({t / epoch:6.2f} epochs)  {r:8.4f}  {c:8.4f}")
    stationary = (tau < window / 30) & (tau < burn_in / 10)  # many relaxations in the window, relaxed before it
    assert stationary.sum() >= 6 and tau[stationary].max() > 20 * epoch
    assert np.all(np.abs(correlated[stationary] - 1) < 0.1 + 3 * variance_rel_se(tau[stationary], window)), correlated
    assert ratio[stationary].min() < 0.02  # where the uncorrelated prediction is 50x too large


def test_split_prediction_at_the_mean_weights_leaves_training_unchanged(tmp_path):
    """Under epoch sampling the noise is also taken apart at the window's mean weights (the model is
    set to them and back): the run trains exactly as without the analysis, and the split prediction
    is the formula over the logged parts, as a window of 300 steps reads it: s(θ̄) = (1 − share) s̄
    with the epoch's memory, share · s̄ uncorrelated (s̄ from the uncorrelated prediction, linear in it)."""
    from sgdexp.stats import epoch_noise_autocorrelation, expected_window_variance

    lr, momentum, data = 0.1, 0.9, ["dataset.dim=4", "dataset.n_train=256"]
    extra = data + ["analysis.curvature.noise_points=5"]
    summary = linear_run(tmp_path, "epoch", momentum, lr, 100, 300, extra)
    # training goes on after the window (steps 101-400) as it would without the analysis
    longer = linear_run(tmp_path / "longer", "epoch", momentum, lr, 100, 300, extra + ["trainer.steps=600"])
    plain = linear_run(tmp_path / "longer", "epoch", momentum, lr, 100, 300, data + ["trainer.steps=600"], analysed=False)
    assert "curvature/predicted_variance_split/top0" in longer
    assert longer["train/loss"] == plain["train/loss"] and longer["test/loss"] == plain["test/loss"]
    lam, share = per_direction(summary, "eigenvalue"), per_direction(summary, "noise_moving_share")
    assert np.all((share > 0) & (share < 0.5)), share  # s is convex in θ: its mean over the window exceeds s(θ̄)
    mean_noise = per_direction(summary, "predicted_variance") / expected_window_variance(lam, [1.0], 300, lr, momentum)
    at_mean = (1 - share) * mean_noise
    rho = epoch_noise_autocorrelation(256, 16)
    expected = (expected_window_variance(lam, at_mean[:, None] * rho[None, :], 300, lr, momentum)
                + expected_window_variance(lam, (share * mean_noise)[:, None], 300, lr, momentum))
    np.testing.assert_allclose(per_direction(summary, "predicted_variance_split"), expected, rtol=1e-6)
    correlated = expected_window_variance(lam, mean_noise[:, None] * rho[None, :], 300, lr, momentum)
    np.testing.assert_allclose(per_direction(summary, "predicted_variance_correlated"), correlated, rtol=1e-6)
    # replacement batches have no memory, and a subset's covariance would blur the split: no split keys
    for sampler, samples in (("replacement", "0"), ("epoch", "64")):
        other = linear_run(tmp_path / sampler / samples, sampler, momentum, lr, 100, 300,
                           extra + [f"analysis.curvature.noise_samples={samples}"])
        assert not [k for k in other if "_split" in k or "moving_share" in k]


def test_without_noise_points_the_window_reads_the_measured_noise(tmp_path):
    # noise_points=0: the window's prediction is for the noise variance measured at its start, as a
    # window of 200 steps reads it (not the stationary variance)
    from sgdexp.stats import expected_window_variance

    summary = linear_run(tmp_path, "replacement", 0.0, 0.2, 50, 200, ["dataset.dim=4", "analysis.curvature.noise_points=0"])
    rows = read_metrics(tmp_path / "replacement-0.0" / "metrics.jsonl")
    start = next(r for r in rows if "curvature/noise_variance/top0" in r)  # the measurement at step 50
    assert start["step"] == 50
    lam, noise = per_direction(summary, "eigenvalue"), per_direction(start, "noise_variance")
    np.testing.assert_allclose(per_direction(summary, "predicted_variance"),
                               expected_window_variance(lam, noise[:, None], 200, 0.2), rtol=1e-6)


def test_resume_inside_a_split_window_equals_uninterrupted(tmp_path, monkeypatch):
    # the window's weight sum is part of the checkpoint: the split prediction of a resumed run is the same
    overrides = linear_overrides("epoch", 0.9, 0.1, 100, 300, ["dataset.dim=4", "dataset.n_train=256",
                                                               "analysis.curvature.noise_points=5",
                                                               "trainer.checkpoint_every=150"])
    full = train_run(tmp_path / "full", overrides)
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=150)  # window 101..400 open
    resumed = train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    assert resumed["curvature/predicted_variance_split/top0"] == full["curvature/predicted_variance_split/top0"]
    for name in ("metrics.jsonl", "arrays.jsonl"):
        assert read_metrics(tmp_path / "killed" / name) == read_metrics(tmp_path / "full" / name)


@pytest.mark.slow
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_epoch_sampling_variance_matches_split_prediction(tmp_path, momentum):
    # At η = 0.1 the epoch noise's weight-dependent part (0.4-1.1% of it without momentum, 7-16% with
    # 0.9: η_eff = 1) sets the variance along directions slower than a few epochs, where Kühn &
    # Rosenow's prediction for the whole noise is short by up to 1.6x (β = 0, 28 epochs) and 11x
    # (β = 0.9, 17 epochs); the split prediction (that part uncorrelated, the noise at the mean
    # weights anti-correlated) accounts for it: 0.95-1.07 and 0.76-1.07
    window, burn_in, epoch = 40_000, 10_000, 512 // 16
    extra = ["dataset.n_train=512", "dataset.condition_number=1000", "analysis.curvature.noise_points=200"]
    summary = linear_run(tmp_path, "epoch", momentum, 0.1, burn_in, window, extra)
    lam, tau, ratio = directions(summary)
    correlated, split = per_direction(summary, "variance_ratio_correlated"), per_direction(summary, "variance_ratio_split")
    print("relaxation steps / ratio to the correlated prediction / to the split one / moving share:")
    for t, c, p, m in zip(tau, correlated, split, per_direction(summary, "noise_moving_share")):
        print(f"  {t:8.1f} ({t / epoch:6.2f} epochs)  {c:8.4f}  {p:8.4f}  {m:8.4f}")
    stationary = (tau < window / 30) & (tau < burn_in / 10)
    assert stationary.sum() >= 8
    tolerance = 0.1 + 3 * variance_rel_se(tau[stationary], window)
    assert np.all(np.abs(split[stationary] - 1) < tolerance), split
    rms = lambda r: float(np.sqrt(np.mean((r[stationary] - 1) ** 2)))  # noqa: E731
    assert rms(split) < rms(correlated) / 3, (rms(split), rms(correlated))  # what the split adds


SHORT = ["model.widths=[16]", "dataset.subset=256", "trainer.steps=40", "trainer.eval_every=20", "trainer.log_every=10",
         "trainer.checkpoint_every=20"]
ANALYSED = ["analysis=[curvature,generalization]", "analysis.curvature.start=0", "analysis.curvature.every=15", "analysis.curvature.tol=0.001",
            "analysis.curvature.window=8", "analysis.curvature.top_k=2", "analysis.curvature.bottom_k=1",
            "analysis.curvature.probes=6", "analysis.curvature.noise_samples=64", "analysis.curvature.exact_below=0",
            "analysis.generalization.every=20", "analysis.generalization.probes=6", "analysis.generalization.tol=0.001"]


def test_analyses_write_summary_and_do_not_change_training(tmp_path):
    train_run(tmp_path / "plain", SHORT)
    summary = train_run(tmp_path / "analysed", SHORT + ANALYSED)
    # evaluated rows (the analysed run logs more rows, so its mean batch losses cover other steps)
    keep = ("step", "train/loss", "train/accuracy", "test/", "gap/")
    strip = lambda rows: [{k: v for k, v in r.items() if k.startswith(keep)} for r in rows if "test/loss" in r]  # noqa: E731
    assert strip(read_metrics(tmp_path / "plain" / "metrics.jsonl")) == strip(read_metrics(tmp_path / "analysed" / "metrics.jsonl"))
    for key in ("curvature/top_eigenvalue", "curvature/trace", "curvature/eigenvalue/bottom0",
                "curvature/alignment/proj_cosine", "curvature/weight_variance/top0", "curvature/relaxation_steps/top1",
                "generalization/top_eigenvalue", "generalization/trace", "generalization/distance_from_init",
                "generalization/weight_norm", "generalization/accuracy_gap", "generalization/loss_gap"):
        assert np.isfinite(summary[key]), key
    assert summary["curvature/top_eigenvalue"] >= summary["curvature/eigenvalue/top1"] > summary["curvature/eigenvalue/bottom0"]
    assert -1 <= summary["curvature/alignment/proj_diag_pearson"] <= 1  # three directions
    assert summary["generalization/test_loss"] == pytest.approx(summary["test/loss"])
    assert summary["generalization/accuracy_gap"] == pytest.approx(summary["gap/accuracy"])
    assert summary["generalization/top_eigenvalue"] == pytest.approx(summary["curvature/top_eigenvalue"], rel=2e-2)
    # measurements at 0, 15, 30 and 40 (the end); their windows end at 8, 23 and 38 (40 + 8 is past the run)
    rows = read_metrics(tmp_path / "analysed" / "metrics.jsonl")
    assert [r["step"] for r in rows if "curvature/weight_variance/top0" in r] == [8, 23, 38]


def test_generalization_takes_its_sharpness_from_the_curvature_measurement(tmp_path, monkeypatch):
    """With both analyses the Hessian at the end is measured once, whichever is listed first; without
    curvature (or when curvature measures a subset's Hessian) generalization measures its own."""
    both_cfg = SHORT + ["analysis=[generalization,curvature]", "analysis.curvature.exact_below=0"]
    alone = train_run(tmp_path / "alone", SHORT + ["analysis=[generalization]"])
    subset = train_run(tmp_path / "subset", both_cfg + ["analysis.curvature.hessian_samples=32"])
    assert subset["generalization/top_eigenvalue"] == alone["generalization/top_eigenvalue"]
    assert subset["generalization/top_eigenvalue"] != subset["curvature/top_eigenvalue"]

    def measured_twice(*args, **kwargs):
        raise AssertionError("generalization measured the Hessian that curvature had measured")

    monkeypatch.setattr("sgdexp.analysis.generalization.sharpness", measured_twice)
    both = train_run(tmp_path / "both", both_cfg)
    for key in ("top_eigenvalue", "trace", "trace_se"):
        assert both[f"generalization/{key}"] == both[f"curvature/{key}"], key
    assert both["generalization/top_eigenvalue"] == pytest.approx(alone["generalization/top_eigenvalue"], rel=2e-2)


def test_default_schedule_measures_a_short_run_at_its_end_on_a_fixed_subset(tmp_path):
    """start=10000 by default: a 40-step run is measured once, at step 40; `hessian_samples` takes the
    Hessian of a seeded subset, whose top eigenvalue differs from the full set's."""
    base = SHORT + ["analysis=[curvature]", "analysis.curvature.exact_below=0", "analysis.curvature.tol=0.001"]
    full = train_run(tmp_path / "full", base)
    rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["step"] for r in rows if "curvature/top_eigenvalue" in r] == [40]
    assert "curvature/alignment/proj_diag_pearson" not in full  # two directions: a Pearson would be ±1
    sub = train_run(tmp_path / "sub", base + ["analysis.curvature.hessian_samples=32"])
    assert np.isfinite(sub["curvature/top_eigenvalue"])
    assert sub["curvature/top_eigenvalue"] != pytest.approx(full["curvature/top_eigenvalue"], rel=1e-3)


def test_resume_inside_a_curvature_window_equals_uninterrupted(tmp_path, monkeypatch):
    overrides = SHORT + ANALYSED + ["analysis.curvature.every=18", "trainer.checkpoint_every=22"]
    train_run(tmp_path / "full", overrides)
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=22)  # window 19..26 open
    train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    for name in ("metrics.jsonl", "arrays.jsonl"):
        assert read_metrics(tmp_path / "killed" / name) == read_metrics(tmp_path / "full" / name)


def test_overlapping_windows_are_a_config_error(tmp_path):
    from sgdexp.errors import ConfigError

    with pytest.raises(ConfigError, match="analysis.curvature.window"):
        train_run(tmp_path, SHORT + ["analysis=[curvature]", "analysis.curvature.every=10", "analysis.curvature.window=10"])
    assert not (tmp_path / "metrics.jsonl").exists()
    # a Hessian subset larger than the training set (SHORT keeps 256 samples, 80% of them for training)
    with pytest.raises(ConfigError, match=r"analysis.curvature.hessian_samples=1000 is not allowed: 0 \(all\) or at most"):
        train_run(tmp_path, SHORT + ["analysis=[curvature]", "analysis.curvature.hessian_samples=1000"])
    assert not (tmp_path / "metrics.jsonl").exists()


def test_more_eigenpairs_than_lanczos_holds_is_a_config_error(tmp_path):
    from sgdexp.errors import ConfigError

    # 1210 parameters: a basis of 4 (k + 1) + 2 vectors holds k = 301 at most; beyond, scipy's eigsh
    # would build the dense Hessian (a ResNet's does not fit in memory), so the run stops first
    for key in ("top_k", "bottom_k"):
        with pytest.raises(ConfigError, match=rf"analysis.curvature.{key}=302 is not allowed: at most 301 by "
                                              r"Lanczos for a model of 1210 parameters"):
            train_run(tmp_path, SHORT + ["analysis=[curvature]", f"analysis.curvature.{key}=302"])
        assert not (tmp_path / "metrics.jsonl").exists()


def test_linear_summary_has_prediction_keys(tmp_path):
    summary = linear_run(tmp_path, "epoch", 0.0, 0.2, 10, 30, ["dataset.dim=4"])
    lam, tau, ratio = directions(summary)
    assert len(ratio) == 4 and np.all(lam > 0) and np.allclose(tau, 1 / (0.2 * lam))
    predicted = np.array([summary[f"curvature/predicted_variance/top{i}"] for i in range(4)])
    measured = np.array([summary[f"curvature/weight_variance/top{i}"] for i in range(4)])
    assert np.allclose(ratio, measured / predicted)  # the window's prediction, not the end's single point
    json.dumps(summary)


def test_a_window_that_would_end_past_the_run_is_not_begun_and_the_log_says_so(tmp_path, caplog):
    """Measurements at 0, 20 and 40 of a 50-step run with 15-step windows: the one at 40 has no window
    (it would end at 55), which the log says, since the summary's window keys then stay the step-20
    window's beside the step-40 and end measurements' eigenvalues."""
    caplog.set_level("INFO", logger="sgdexp.analysis.curvature")
    train_run(tmp_path, SHORT + ["trainer.steps=50", "analysis=[curvature]", "analysis.curvature.exact_below=0",
                                 "analysis.curvature.start=0", "analysis.curvature.every=20",
                                 "analysis.curvature.window=15"])
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "curvature/weight_variance/top0" in r] == [15, 35]
    said = [r.getMessage() for r in caplog.records if "no weight-variance window" in r.getMessage()]
    assert said == ["curvature: no weight-variance window after the measurement at step 40: "
                    "analysis.curvature.window=15 steps would end at step 55, past trainer.steps=50"]
