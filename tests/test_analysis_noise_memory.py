"""`analysis=[noise_memory]`: its windows fit the run or it says why it measures nothing."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import make_cfg, train_run
from sgdexp.analysis.noise_memory import NoiseMemory
from sgdexp.errors import ConfigError
from sgdexp.tasks.setup import build_setup

SMALL = ["model.widths=[16]", "dataset.subset=256", "trainer.eval_every=30", "trainer.log_every=10",
         "trainer.checkpoint_every=30", "analysis=[noise_memory]", "analysis.noise_memory.max_lag=8",
         "analysis.noise_memory.params=32", "analysis.noise_memory.projections=4"]


def noise_memory(overrides) -> NoiseMemory:
    """The analysis as the run builds it, for the config `SMALL + overrides` (no training)."""
    cfg = make_cfg(SMALL + overrides)
    setup = build_setup(cfg)
    return NoiseMemory(cfg.analysis.noise_memory, setup.source, cfg.noise, cfg.seed, cfg.trainer.steps)


def test_overlapping_windows_are_a_config_error(tmp_path):
    # one record buffer: a window longer than `every` would wrap and never fill (nothing logged)
    with pytest.raises(ConfigError, match=r"^analysis.noise_memory.window=100 is not allowed: at most "
                                          r"analysis.noise_memory.every=64 \(windows must not overlap\)$"):
        train_run(tmp_path / "overlap", SMALL + ["trainer.steps=200", "analysis.noise_memory.every=64",
                                                 "analysis.noise_memory.window=100"])
    assert not (tmp_path / "overlap" / "metrics.jsonl").exists()
    # back-to-back windows (window = every) are allowed, and each one is measured
    train_run(tmp_path / "abut", SMALL + ["trainer.steps=130", "analysis.noise_memory.every=64",
                                          "analysis.noise_memory.window=64"])
    rows = [r for r in _rows(tmp_path / "abut") if "noise_memory/autocorrelation_lag1" in r]
    assert [r["step"] for r in rows] == [64, 128]


def _rows(run_dir):
    from sgdexp.tracking import read_metrics

    return read_metrics(run_dir / "metrics.jsonl")


def test_a_run_shorter_than_the_first_window_says_so(caplog):
    caplog.set_level("INFO", logger="sgdexp.analysis.noise_memory")
    analysis = noise_memory(["trainer.steps=200", "analysis.noise_memory.window=64", "analysis.noise_memory.start=150"])
    assert not any(analysis.observing(s) for s in range(1, 201))
    said = [r.getMessage() for r in caplog.records]
    assert said == ["noise_memory: will not measure in this run: its first window, analysis.noise_memory.window=64 "
                    "steps after analysis.noise_memory.start=150, would end at step 214, past trainer.steps=200"]
    caplog.clear()
    analysis = noise_memory(["trainer.steps=214", "analysis.noise_memory.window=64", "analysis.noise_memory.start=150"])
    assert analysis.observing(151) and analysis.observing(214) and not caplog.records


@pytest.mark.parametrize("noise", [["noise=gd"], ["noise=gd_white", "noise.sigma=0"],
                                   ["noise=sgd", "noise.sampler=epoch", "noise.batch_size=256"]])
def test_no_gradient_noise_is_said_once_and_nothing_is_recorded(noise, caplog):
    caplog.set_level("INFO", logger="sgdexp.analysis.noise_memory")
    analysis = noise_memory(["trainer.steps=100", "analysis.noise_memory.window=64"] + noise)  # 256 training samples
    assert not any(analysis.observing(s) for s in range(1, 101))
    assert len(caplog.records) == 1 and "so there is no gradient noise to measure" in caplog.records[0].getMessage()


def test_full_batch_gd_logs_no_noise_memory_keys_and_no_numpy_warnings(tmp_path, caplog):
    caplog.set_level("INFO", logger="sgdexp.analysis.noise_memory")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's all-NaN and empty-slice warnings
        summary = train_run(tmp_path, SMALL + ["noise=gd", "trainer.steps=70", "analysis.noise_memory.window=64"])
    assert not [k for k in summary if k.startswith("noise_memory/")]
    assert not [k for r in _rows(tmp_path) for k in r if k.startswith("noise_memory/")]
    assert "noise=gd is full-batch GD" in caplog.text


def test_series_without_noise_give_nan_without_numpy_warnings():
    # a coordinate whose SGN is zero throughout (a dead unit) has no Hurst exponent and no autocorrelation:
    # the medians and means skip it, and a layer or window of nothing else reads NaN, silently
    analysis = noise_memory(["trainer.steps=100", "analysis.noise_memory.window=64"])
    record = np.random.default_rng(0).standard_normal(tuple(analysis.record.shape))
    record[:, 0] = 0.0
    for rows in (record, np.zeros_like(record)):
        analysis.record.copy_(torch.from_numpy(rows))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            out = analysis.compute(64)
        acf = out.arrays["noise_memory/autocorrelation"]
        if rows is record:
            assert np.isfinite(out.scalars["noise_memory/hurst_whittle/median"]) and np.isfinite(acf).all()
        else:
            assert np.isnan(out.scalars["noise_memory/hurst_whittle/median"]) and np.isnan(acf).all()
