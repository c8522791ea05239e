"""Noise-injection modes: exact where they promise it, every mode trains, bad values are refused."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import CONF, kill_after_checkpoint, make_cfg, train_run
from sgdexp.data import make_sampler
from sgdexp.noise import sgd_covariance_noise
from sgdexp.noise.modes import MODES, sgd_covariance_weights
from sgdexp.tasks.setup import build_setup
from sgdexp.tracking import read_metrics

SHORT = ["trainer.steps=80", "trainer.eval_every=40", "trainer.log_every=10", "trainer.checkpoint_every=40"]
INJECTED = sorted(p.stem for p in (CONF / "noise").glob("gd_*.yaml"))


def test_every_yaml_mode_is_registered():
    assert set(INJECTED) | {"sgd", "gd"} == set(MODES.names())


def test_white_noise_with_sigma_zero_is_gd_step_for_step(tmp_path):
    train_run(tmp_path / "gd", SHORT + ["noise=gd", "optimizer.momentum=0.9"])
    train_run(tmp_path / "white", SHORT + ["noise=gd_white", "noise.sigma=0", "optimizer.momentum=0.9"])
    gd, white = read_metrics(tmp_path / "gd" / "metrics.jsonl"), read_metrics(tmp_path / "white" / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("noise/")} for r in rows]  # noqa: E731
    assert strip(gd) == strip(white)
    a = torch.load(tmp_path / "gd" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "white" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", INJECTED)
def test_every_mode_trains_with_momentum_and_logs_its_noise(tmp_path, mode):
    summary = train_run(tmp_path, SHORT + [f"noise={mode}", "noise.record_steps=64", "optimizer.momentum=0.5",
                                           "model.widths=[32]"])
    assert summary["status"] == "completed" and summary["test/accuracy"] > 0.5
    last = read_metrics(tmp_path / "metrics.jsonl")[-1]
    assert last["noise/norm"] > 0 and last["noise/sigma"] > 0
    expected = {"gd_fbm": "noise/hurst", "gd_levy": "noise/alpha", "gd_white": "noise/lag1_autocorrelation",
                "gd_anticorrelated": "noise/lag1_autocorrelation"}.get(mode)
    if expected:
        assert expected in last
    assert all(summary[k] == v for k, v in last.items() if k.startswith("noise/"))  # the last values reach summary.json


def test_mode_statistics_measure_what_was_injected(tmp_path):
    # 64 steps × 16 coordinates of each generator: the logged statistic sits near its parameter.
    stats = {}
    for mode, extra in (("gd_fbm", "noise.hurst=0.8"), ("gd_levy", "noise.alpha=1.2"), ("gd_anticorrelated", "seed=0")):
        train_run(tmp_path / mode, SHORT + [f"noise={mode}", extra, "noise.record_steps=256", "trainer.steps=256",
                                            "noise.record_coords=64", "model.widths=[32]"])
        stats[mode] = read_metrics(tmp_path / mode / "metrics.jsonl")[-1]
    # means over 64 series of 256 steps: standard errors ~0.01 (H), ~0.02 (α), ~0.008 (ρ1)
    assert abs(stats["gd_fbm"]["noise/hurst"] - 0.8) < 0.05
    assert abs(stats["gd_levy"]["noise/alpha"] - 1.2) < 0.1
    assert abs(stats["gd_anticorrelated"]["noise/lag1_autocorrelation"] + 0.5) < 0.05


@pytest.mark.parametrize("sampler,factor", [("epoch", 60 / 63), ("replacement", 1.0)])
def test_matched_sigma_equals_sgd_noise_power(sampler, factor):
    cfg = make_cfg(["noise=gd_white", "dataset.subset=64", "model.widths=[8]", "noise.batch_size=4",
                    f"noise.sampler={sampler}"])
    setup = build_setup(cfg)
    source = setup.source
    grads = []
    for i in range(source.n_train):  # per-sample gradients the slow, obvious way
        source.backward_batch(torch.tensor([i]))
        grads.append(source.flat_grad().double())
    g = torch.stack(grads)
    trace = float((g - g.mean(0)).square().sum(1).mean())
    assert float(source.noise_trace()) == pytest.approx(trace, rel=1e-4)
    setup.noise.apply(1)
    # (N − B)/(N − 1) · tr(C)/B for batches of distinct samples, tr(C)/B for i.i.d. ones
    assert setup.noise.sigma ** 2 * source.dim == pytest.approx(factor * trace / 4, rel=1e-4)
    assert setup.noise.metrics()["noise/target_power"] == pytest.approx(factor * trace / 4, rel=1e-4)


def _sgd_batch_noise_power(source, sampler: str, batch_size: int, epochs: int):
    """Mean |g_B − ∇L|² over the batches the sampler draws, and its standard error (epochs as units:
    within an epoch the batches partition the data, so their noises are dependent)."""
    full = source.full_grad_vector(eval_mode=True)
    per_epoch = source.n_train // batch_size
    draw = make_sampler(sampler, source.n_train, batch_size, 123, torch.device("cpu"))
    batches = torch.stack([draw.next() for _ in range(epochs * per_epoch)])
    sq = source.batch_grad_sq_norms(batches, center=full).reshape(epochs, per_epoch).mean(1)
    return float(sq.mean()), float(sq.std()) / math.sqrt(epochs)


@pytest.mark.parametrize("sampler", ["epoch", "replacement"])
@pytest.mark.parametrize("batch_size", [8, 64])  # B = 8 and B = N/2
def test_matched_power_is_the_samplers_batch_noise_power(sampler, batch_size):
    n = 128
    base = [f"dataset.subset={n}", "model.widths=[8]", f"noise.batch_size={batch_size}", f"noise.sampler={sampler}"]
    # exact (all N per-sample gradients) and, at B = 8, estimated from 96 samples (12 minibatches)
    runs = [("gd_white", 0)] + ([("gd_white", 96), ("gd_sgdcov", 96)] if batch_size == 8 else [])
    powers = {}
    for mode, samples in runs:
        setup = build_setup(make_cfg(base + [f"noise={mode}", f"noise.match_samples={samples}"]))
        setup.noise.apply(1)
        powers[mode, samples] = (setup.noise.injected_power(), setup.noise.metrics()["noise/target_power_se"])
    sgd, sgd_se = _sgd_batch_noise_power(setup.source, sampler, batch_size, epochs=1200 * batch_size // n)
    assert sgd_se < 0.03 * sgd  # the check can see a (N − B)/(N − 1) = 0.94 (B = 8) or 0.50 (B = N/2) error
    exact, zero = powers["gd_white", 0]
    assert zero == 0 and abs(exact - sgd) < 3 * sgd_se
    for (mode, samples), (power, se) in powers.items():  # estimated: both errors count
        if samples:
            assert 0 < se < 0.5 * power and abs(power - sgd) < 3 * math.hypot(se, sgd_se)
    # gd_sgdcov's noise itself, Σ_i w_i ∇ℓ_i with its weights (one matrix product per draw; the
    # weighted backward pass that computes it is checked against the covariance above)
    g = torch.cat(list(setup.source.per_sample_grads())).double()
    z = torch.randn(4000, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = torch.stack([sgd_covariance_weights(row, batch_size, sampler) for row in z])
    zeta = weights @ g
    z = zeta.square().sum(1)
    assert abs(float(z.mean()) - sgd) < 3 * math.hypot(float(z.std()) / math.sqrt(len(z)), sgd_se)
    # and its covariance is f · C/B (Wishart sampling error as in the test below)
    factor = (n - batch_size) / (n - 1) if sampler == "epoch" else 1.0
    cov = factor * (g - g.mean(0)).T @ (g - g.mean(0)) / n / batch_size
    expected = math.sqrt((torch.trace(cov) ** 2 + torch.trace(cov @ cov)) / len(z)) / torch.linalg.matrix_norm(cov)
    assert float(torch.linalg.matrix_norm(zeta.T @ zeta / len(z) - cov) / torch.linalg.matrix_norm(cov)) < 3 * float(expected)


def test_sgd_covariance_noise_has_covariance_c_over_b():
    cfg = make_cfg(["noise=gd_sgdcov", "dataset=gaussian_mixture", "dataset.n_train=24", "dataset.dim=3",
                    "dataset.classes=2", "model=linear", "noise.batch_size=4"])
    setup = build_setup(cfg)
    source, mode = setup.source, setup.noise
    with torch.no_grad():  # move off the initial point so that per-sample gradients differ clearly
        for p in source.params:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    g = torch.cat([gi.double() for gi in source.per_sample_grads()])
    cov = (g - g.mean(0)).T @ (g - g.mean(0)) / len(g) / 4  # C / B
    source.backward_full()
    full = source.flat_grad().double()
    draws = 10_000
    samples = torch.empty(draws, source.dim, dtype=torch.float64)
    for t in range(draws):
        mode.apply(t + 1)
        samples[t] = source.flat_grad().double() - full
    # the mode's ζ, and the public sampler's (which leaves .grad as it was)
    generator = torch.Generator().manual_seed(2)
    public = torch.stack([sgd_covariance_noise(source, 4, generator).double() for _ in range(draws)])
    assert torch.equal(source.flat_grad().double(), samples[-1] + full)  # .grad untouched
    # Wishart sampling error: E|Ĉ − Σ|_F² = (tr(Σ)² + tr(Σ²)) / n
    expected = math.sqrt((torch.trace(cov) ** 2 + torch.trace(cov @ cov)) / draws) / torch.linalg.matrix_norm(cov)
    # the mode follows the epoch sampler (one batch of distinct samples: (N − B)/(N − 1) · C/B);
    # the public sampler defaults to with-replacement batches (C/B)
    assert mode.population == "epoch"
    for zeta, target in ((samples, cov * (24 - 4) / (24 - 1)), (public, cov)):
        emp = zeta.T @ zeta / draws  # mean is zero by construction
        err = torch.linalg.matrix_norm(emp - target) / torch.linalg.matrix_norm(target)
        assert float(err) < 3 * float(expected)
        assert float(zeta.mean(0).abs().max()) < 5 * float(torch.diagonal(cov).sqrt().max()) / math.sqrt(draws)


COMPILED_SAMPLER = ["trainer.compile=true", "noise.sigma=0.01"]  # σ fixed: only the sampler is compiled


@pytest.mark.parametrize("mode,extra", [("gd_fbm", []), ("gd_anticorrelated", []), ("gd_levy", []),
                                        ("gd_anticorrelated", COMPILED_SAMPLER), ("gd_levy", COMPILED_SAMPLER)])
def test_injected_modes_resume_exactly(tmp_path, monkeypatch, mode, extra):
    overrides = SHORT + [f"noise={mode}", "noise.record_steps=64", "noise.match_every=30", "model.widths=[16]", *extra]
    train_run(tmp_path / "full", overrides)
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=40)
    train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    assert read_metrics(tmp_path / "killed" / "metrics.jsonl") == read_metrics(tmp_path / "full" / "metrics.jsonl")


def test_trace_on_a_sample_subset_is_unbiased():
    setup = build_setup(make_cfg(["model.widths=[16]"]))
    source = setup.source
    g = torch.cat(list(source.per_sample_grads())).double()
    sq = g.square().sum(1)
    full_sq = float(g.mean(0).square().sum())
    exact = float(sq.mean()) - full_sq
    assert float(source.noise_trace()) == pytest.approx(exact, rel=1e-4)
    k, n = 256, source.n_train
    subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k]
    estimate = float(source.noise_trace(full_sq, subset))
    se = float(sq.std()) / math.sqrt(k) * math.sqrt(1 - k / n)  # sampling without replacement
    assert abs(estimate - exact) < 4 * se


def test_matched_sigma_from_minibatches_is_unbiased():
    cfg = make_cfg(["noise=gd_white", "noise.match_samples=512", "noise.batch_size=32", "model.widths=[16]"])
    setup = build_setup(cfg)
    source, mode = setup.source, setup.noise
    source.backward_full()
    n = source.n_train
    exact = float(source.noise_trace()) * (n - 32) / (n - 1)  # epoch batches: B distinct samples of N
    estimates = torch.tensor([mode.matched_sigma() ** 2 * 32 * source.dim for _ in range(20)], dtype=torch.float64)
    # 20 independent estimates (16 minibatches each): their mean is within 4 standard errors of tr C
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / math.sqrt(20)
    assert float(estimates.std()) < 0.3 * exact
