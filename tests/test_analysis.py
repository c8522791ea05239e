"""Analyses inside training: correct against known answers, and they never change the training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import kill_after_checkpoint, make_cfg, train_run
from sgdexp.data import make_sampler
from sgdexp.stats import autocorrelation
from sgdexp.tasks.setup import build_setup
from sgdexp.tracking import read_metrics

SHORT = ["trainer.steps=60", "trainer.eval_every=30", "trainer.log_every=10", "trainer.checkpoint_every=30"]


def epoch_acf(m: int, max_lag: int) -> np.ndarray:
    """Lag-k autocorrelation of epoch-sampled SGN at fixed weights: −(M−k)/(M(M−1)) for 0 < k < M."""
    k = np.arange(max_lag + 1)
    return np.where(k == 0, 1.0, np.where(k < m, -(m - k) / (m * (m - 1)), 0.0))


def test_per_sample_grads_by_vmap_equal_a_loop():
    for overrides in (["model.widths=[16]"], ["model=cnn", "model.norm=batch", "model.channels=[4,8]", "model.hidden=8"]):
        overrides = overrides + ["noise.batch_size=4"]
        setup = build_setup(make_cfg(overrides + ["dataset.subset=12"]))
        src = setup.source
        src.model.eval()  # per-sample gradients are taken in eval mode (BatchNorm running statistics)
        loop = []
        for i in range(12):
            src.backward_batch(torch.tensor([i]))
            loop.append(src.flat_grad())
        src.model.train()
        vmapped = torch.cat(list(src.per_sample_grads(chunk=5)))
        assert torch.allclose(vmapped, torch.stack(loop), atol=1e-5, rtol=1e-4)
        batches = torch.tensor([[0, 3, 5], [7, 1, 2]])
        mb = torch.cat(list(src.minibatch_grads(batches)))
        assert torch.allclose(mb, torch.stack(loop)[batches].mean(dim=1), atol=1e-5, rtol=1e-4)


def test_per_sample_squared_norms_eager_and_compiled():
    # batch_grad_sq_norms against the gradients themselves; the compiled kernels
    # (trainer.compile=true) equal eager vmap, including the padded last chunk (50 rows in 16s)
    overrides = ["model.widths=[16]", "noise.batch_size=4", "dataset.subset=50", "trainer.chunk_size=16"]
    eager = build_setup(make_cfg(overrides)).source
    compiled = build_setup(make_cfg(overrides + ["trainer.compile=true"])).source
    samples, batches = torch.arange(50).reshape(-1, 1), torch.arange(48).reshape(12, 4)
    g = torch.cat(list(eager.per_sample_grads())).double()
    center = g.mean(0).float()
    sq = eager.batch_grad_sq_norms(samples)
    assert torch.allclose(sq, g.square().sum(1), rtol=1e-5)
    assert torch.allclose(eager.batch_grad_sq_norms(samples, center), (g - center.double()).square().sum(1), rtol=1e-4)
    assert torch.allclose(compiled.batch_grad_sq_norms(samples), sq, rtol=1e-5)
    assert torch.allclose(torch.cat(list(compiled.minibatch_grads(batches))),
                          torch.cat(list(eager.minibatch_grads(batches))), atol=1e-6, rtol=1e-5)
    assert set(compiled._compiled) == {"_row_sq_norms", "_row_flat_grads"} and not eager._compiled


@pytest.mark.parametrize("sampler", ["epoch", "replacement"])
def test_epoch_sgn_is_anticorrelated_at_fixed_weights(sampler):
    n, b = 64, 8  # M = 8 batches per epoch
    setup = build_setup(make_cfg(["dataset.subset=64", "model.widths=[8]", f"noise.batch_size={b}"]))
    src = setup.source
    g = torch.cat(list(src.per_sample_grads())).double()  # (N, d) at fixed weights
    u = torch.randn(src.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    per_sample = (g - g.mean(0)) @ u  # SGN of a batch = the mean of its samples' deviations
    s = make_sampler(sampler, n, b, seed=0, device=torch.device("cpu"))
    steps = 40_000
    series = torch.stack([per_sample[s.next()].mean() for _ in range(steps)]).numpy()
    acf = autocorrelation(series, 10)
    expected = epoch_acf(n // b, 10) if sampler == "epoch" else np.eye(1, 11)[0]
    # standard error of a sample autocorrelation ≈ 1/√T = 0.005; 4 standard errors
    assert np.abs(acf - expected).max() < 4 / np.sqrt(steps)
    if sampler == "epoch":
        m = n // b
        epochs = series.reshape(-1, m)  # the sampler starts a fresh epoch every M steps
        assert np.abs(epochs.sum(axis=1)).max() < 1e-9 * np.abs(series).max() * m  # each epoch's SGN sums to 0
        # any two steps of one epoch correlate by exactly −1/(M−1); sampling error 1/√(epochs)
        corr = np.corrcoef(epochs[:, 0], epochs[:, 3])[0, 1]
        assert abs(corr + 1 / (m - 1)) < 4 / np.sqrt(len(epochs))


def test_noise_memory_in_training_shows_epoch_anticorrelation(tmp_path):
    # lr ~ 0: the weights stay fixed, so the SGN series is the sampler's alone (M = 64/8 = 8)
    common = ["dataset.subset=64", "noise.batch_size=8", "optimizer.lr=1e-12", "model.widths=[8]",
              "analysis=[noise_memory]", "analysis.noise_memory.window=1024", "analysis.noise_memory.every=2000",
              "analysis.noise_memory.params=64", "analysis.noise_memory.projections=32",
              "analysis.noise_memory.max_lag=10", "trainer.steps=1024", "trainer.eval_every=0",
              "trainer.log_every=256", "trainer.checkpoint_every=0"]
    result = {}
    for sampler in ("epoch", "replacement"):
        summary = train_run(tmp_path / sampler, common + [f"noise.sampler={sampler}"])
        arrays = [json.loads(l) for l in (tmp_path / sampler / "arrays.jsonl").read_text().splitlines()]
        result[sampler] = np.array(arrays[-1]["noise_memory/autocorrelation"])
        assert "noise_memory/hurst_local_whittle/median" in summary
    # each series' acf has standard error 1/√1024 ≈ 0.031; the mean over 96 series is no worse
    assert np.abs(result["epoch"][1:8] - epoch_acf(8, 10)[1:8]).max() < 0.094
    assert np.abs(result["replacement"][1:]).max() < 0.094
    assert result["epoch"][1] < -0.08  # −(M−1)/(M(M−1)) = −1/8


def test_noise_stats_in_training(tmp_path):
    overrides = SHORT + ["analysis=[noise_stats]", "analysis.noise_stats.every=30", "analysis.noise_stats.batches=400",
                         "analysis.noise_stats.params=500", "dataset.subset=512", "model.widths=[32]"]
    summary = train_run(tmp_path, overrides)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "noise_stats/alpha_scale_mixture" in r]
    assert [r["step"] for r in rows] == [0, 30, 60]
    for key in ("noise_stats/alpha_scale_mixture", "noise_stats/alpha_pooled_standardized", "noise_stats/alpha_median",
                "noise_stats/non_gaussian_fraction", "noise_stats/noise_norm", "noise_stats/noise_scale",
                "noise_stats/alpha/1.weight/median", "noise_stats/snr/1.weight", "noise_stats/alpha_adequate_fraction",
                "noise_stats/alpha_adequate/1.bias", "noise_stats/alpha_block_sum_median",
                "noise_stats/top1pct_power_share", "noise_stats/top1pct_power_share_coord_median"):
        assert key in summary, key
    assert 0 < summary["noise_stats/alpha_median"] <= 2 and 0 <= summary["noise_stats/non_gaussian_fraction"] <= 1
    assert 0 <= summary["noise_stats/alpha_adequate_fraction"] <= 1
    assert 1 / 400 <= summary["noise_stats/top1pct_power_share"] <= 1  # 4 of 400 batches: at least their share
    # the 10 output biases: all sampled (min_per_layer=16 > 10), so they get quartiles of 10 values
    assert "noise_stats/alpha/1.bias/median" in summary
    arrays = [json.loads(l) for l in (tmp_path / "arrays.jsonl").read_text().splitlines()]
    assert len(arrays[-1]["noise_stats/alpha/1.weight"]) > 100


def test_noise_stats_trace_matches_exact_trace():
    cfg = make_cfg(["analysis=[noise_stats]", "analysis.noise_stats.batches=400", "dataset.subset=256",
                    "model.widths=[16]", "noise.batch_size=16"])
    setup = build_setup(cfg)
    from sgdexp.analysis import build_analyses

    (analysis,) = build_analyses(cfg, setup.source)
    m = analysis.compute(0)
    exact = float(setup.source.noise_trace())
    se = m.scalars["noise_stats/trace_cov_se"]
    assert abs(m.scalars["noise_stats/trace_cov"] - exact) < 4 * se and se < 0.2 * exact


def test_every_layer_keeps_its_minimum_of_sampled_coordinates():
    from sgdexp.analysis.base import CoordinateSample, layer_quantiles

    setup = build_setup(make_cfg(["model.widths=[32,16]"]))
    source = setup.source
    coords = CoordinateSample(source, 200, torch.Generator().manual_seed(0), min_per_layer=12)
    sizes = dict(zip(source.named_params, source.numels))
    assert {name: len(i) >= min(12, sizes[name]) for name, i in coords.layers.items()} == {n: True for n in sizes}
    assert len(set(coords.index.tolist())) == len(coords)
    values = np.arange(len(coords), dtype=float)
    few = {"a": np.arange(3), "b": np.arange(3, 3 + 20)}
    out = layer_quantiles("x", values, few)
    assert out == {"x/a/value0": 0.0, "x/a/value1": 1.0, "x/a/value2": 2.0,
                   "x/b/median": 12.5, "x/b/q1": 7.75, "x/b/q3": 17.25}


def test_noise_stats_warns_when_most_coordinates_are_not_stable(caplog, monkeypatch):
    import sgdexp.analysis.noise_stats as noise_stats
    from sgdexp.analysis import build_analyses
    from sgdexp.stats import stable_adequacy

    cfg = make_cfg(["analysis=[noise_stats]", "analysis.noise_stats.batches=64", "analysis.noise_stats.params=100",
                    "dataset.subset=256", "model.widths=[16]"])
    (analysis,) = build_analyses(cfg, build_setup(cfg).source)
    with caplog.at_level("WARNING"):
        m = analysis.compute(0)
    assert m.scalars["noise_stats/alpha_adequate_fraction"] > 0.5 and not caplog.records

    def none_adequate(x, dim=0):
        result = stable_adequacy(x, dim=dim)
        result.adequate[:] = False
        return result

    monkeypatch.setattr(noise_stats, "stable_adequacy", none_adequate)
    with caplog.at_level("WARNING"):
        m = analysis.compute(1)
    assert m.scalars["noise_stats/alpha_adequate_fraction"] == 0
    assert len(caplog.records) == 1 and "SαS law fits only 0%" in caplog.records[0].getMessage()


def test_analyses_do_not_change_training(tmp_path):
    base = SHORT + ["model=cnn", "model.norm=batch", "model.channels=[8,8]", "model.hidden=16"]
    train_run(tmp_path / "plain", base)
    train_run(tmp_path / "analysed", base + ["analysis=[noise_stats,noise_memory]", "analysis.noise_stats.every=20",
                                             "analysis.noise_stats.batches=16", "analysis.noise_stats.params=64",
                                             "analysis.noise_memory.window=64", "analysis.noise_memory.every=100",
                                             "analysis.noise_memory.max_lag=8"])
    keep = ("train/", "test/", "lr", "epoch")
    strip = lambda rows: [{k: v for k, v in r.items() if k.startswith(keep)} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "plain" / "metrics.jsonl")) == strip(read_metrics(tmp_path / "analysed" / "metrics.jsonl"))


def test_resume_inside_an_analysis_window_equals_uninterrupted(tmp_path, monkeypatch):
    overrides = SHORT + ["analysis=[noise_memory,noise_stats]", "analysis.noise_memory.window=64",
                         "analysis.noise_memory.every=100", "analysis.noise_memory.max_lag=8",
                         "analysis.noise_stats.every=20", "analysis.noise_stats.batches=16",
                         "analysis.noise_stats.params=64", "trainer.steps=70"]
    train_run(tmp_path / "full", overrides)
    # the window of steps 1..64 is half recorded at the step-30 checkpoint
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=30)
    train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    for name in ("metrics.jsonl", "arrays.jsonl"):
        assert read_metrics(tmp_path / "killed" / name) == read_metrics(tmp_path / "full" / name)
    assert any("noise_memory/autocorrelation_lag1" in r for r in read_metrics(tmp_path / "full" / "metrics.jsonl"))


def fake_wandb(monkeypatch):
    """wandb.init replaced by a run that keeps what it is given: (logged rows, its summary)."""
    import wandb

    logged, summary = [], {}

    class FakeRun:
        id = "fake0002"

        def __init__(self):
            self.summary = summary

        def log(self, row, step=None):  # images are logged without a step
            logged.append(row)

        def log_artifact(self, artifact):
            pass

        def finish(self, exit_code=0):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun())
    return logged, summary


def test_arrays_reach_wandb_as_histograms_and_curves(tmp_path, monkeypatch):
    import wandb

    logged, _ = fake_wandb(monkeypatch)
    train_run(tmp_path, SHORT + ["logger=wandb", "analysis=[noise_stats,noise_memory]", "analysis.noise_stats.every=30",
                                 "analysis.noise_stats.batches=16", "analysis.noise_stats.params=64",
                                 "analysis.noise_memory.window=64", "analysis.noise_memory.max_lag=8", "trainer.steps=70"])
    values = {k: v for row in logged for k, v in row.items()}
    assert isinstance(values["noise_stats/alpha/1.weight"], wandb.Histogram)
    assert "noise_memory/autocorrelation" in values and "noise_stats/alpha_scale_mixture" in values


def test_weight_analyses_reach_summary_and_wandb_and_leave_training_alone(tmp_path, monkeypatch):
    """A short run with diffusion, curvature and generalization: their keys in summary.json and in
    W&B (scalars, summary, the MSD figure), and the same training as without them."""
    import wandb

    train_run(tmp_path / "plain", SHORT)
    logged, wandb_summary = fake_wandb(monkeypatch)
    summary = train_run(tmp_path / "analysed", SHORT + ["logger=wandb", "trainer.figures=true",
                                                        "analysis=[diffusion,curvature,generalization]"])
    values = {k: v for row in logged for k, v in row.items()}
    for key in ("diffusion/distance_sq", "diffusion/path_length", "diffusion/gamma_early", "diffusion/tw0/gamma",
                "curvature/top_eigenvalue", "curvature/trace", "curvature/alignment/proj_cosine",
                "generalization/test_loss", "generalization/top_eigenvalue", "generalization/distance_from_init"):
        assert np.isfinite(summary[key]), key
        assert values[key] == wandb_summary[key] == summary[key], key
    assert isinstance(values["msd"], wandb.Image) and (tmp_path / "analysed" / "figures" / "msd.png").exists()
    # evaluated rows (the analysed run logs more rows, so its mean batch losses cover other steps)
    keep = ("step", "train/", "test/", "gap/")
    strip = lambda rows: [{k: v for k, v in r.items() if k.startswith(keep)} for r in rows if "test/loss" in r]  # noqa: E731
    assert strip(read_metrics(tmp_path / "plain" / "metrics.jsonl")) == strip(read_metrics(tmp_path / "analysed" / "metrics.jsonl"))


def test_noise_stats_at_a_batch_of_every_sample_says_there_is_no_noise(tmp_path, caplog):
    # every batch is the full set: ξ is rounding error, which read as α ≈ 1.99 and an SNR bias of 3e10
    caplog.set_level("INFO", logger="sgdexp.analysis.noise_stats")
    summary = train_run(tmp_path / "run", SHORT + ["dataset.subset=64", "noise.batch_size=64", "noise.sampler=epoch",
                                                   "analysis=[noise_stats]", "analysis.noise_stats.every=20"])
    assert summary["status"] == "completed" and not [k for k in summary if k.startswith("noise_stats/")]
    assert any("takes all 64 training samples" in r.getMessage() for r in caplog.records)
