"""The epoch_anticorrelation preset (Kühn & Rosenow): both scales compose and every job validates; a
tiny version of the small sweep runs from the command line and reports its keys."""
from __future__ import annotations

import itertools
import json

import pytest

from conftest import cli, preset_report, preset_sweep
from sgdexp.config import compose_config, validate

PRESET = "+experiment=epoch_anticorrelation"


@pytest.mark.parametrize("scale,dataset,model", [("small", "linear_gaussian", "linear"), ("paper", "mnist", "cnn")])
def test_both_scales_compose_and_every_job_validates(scale, dataset, model):
    mode, params = preset_sweep([PRESET, f"scale={scale}"])
    assert str(mode) == "RunMode.MULTIRUN"
    assert params["noise.sampler"] == "epoch,replacement" and params["optimizer.momentum"] == "0.0,0.9"
    jobs = list(itertools.product(*(v.split(",") for v in params.values())))
    assert len(jobs) == 4
    for combo in jobs:
        cfg = compose_config([PRESET, f"scale={scale}"] + [f"{k}={v}" for k, v in zip(params, combo)])
        validate(cfg)
        assert cfg.dataset.name == dataset and cfg.model.name == model and cfg.noise.name == "sgd"
        assert sorted(cfg.analysis) == ["curvature", "noise_memory"]
        assert cfg.analysis.curvature.momentum == cfg.optimizer.momentum  # the prediction's optimizer is the run's


def test_small_sweep_runs_at_a_tiny_size(tmp_cwd):
    proc = cli([PRESET, "hydra.sweep.dir=sweep", "trainer.steps=300", "trainer.eval_every=100",
                "analysis.curvature.start=100", "analysis.curvature.every=151", "analysis.curvature.window=150",
                "analysis.noise_memory.start=100", "analysis.noise_memory.window=128", "analysis.noise_memory.every=1000",
                "logger=none", "device=cpu", "trainer.progress=false"], cwd=tmp_cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_cwd / "sweep").glob("[0-9]"))
    assert len(jobs) == 4
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed"
        for key in ("curvature/variance_ratio/top0", "curvature/relaxation_steps/top15", "noise_memory/autocorrelation_lag1"):
            assert key in summary, key
        # epoch batches: also Kühn & Rosenow's prediction and the split one; replacement: neither
        epoch = "noise.sampler=epoch" in (job / ".hydra" / "overrides.yaml").read_text()
        for key in ("curvature/variance_ratio_correlated/top15", "curvature/variance_ratio_split/top15",
                    "curvature/noise_moving_share/top15"):
            assert (key in summary) == epoch, (job, key)
    preset_report(tmp_cwd / "sweep", "Jobs", "Curvature", "Noise memory")
