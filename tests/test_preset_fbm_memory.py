"""The fbm_memory preset (Tan et al.): a sweep of two kinds of job, the SGN's Hurst exponent for two
models and escape time against H under GD plus fGn; both scales compose and every job validates, a
tiny sweep of both kinds runs and its report shows the Hurst exponents and the fit against H."""
from __future__ import annotations

import json

import pytest

from conftest import cli, preset_report, preset_sweep
from sgdexp.config import compose_config, validate

PRESET = "+experiment=fbm_memory"


@pytest.mark.parametrize("scale,models,dataset,replicas,budget", [("small", {"mlp", "cnn"}, "digits", 256, 5000),
                                                                  ("paper", {"resnet", "vgg16"}, "cifar10", 1024, 50000)])
def test_both_scales_compose_and_every_job_validates(scale, models, dataset, replicas, budget):
    mode, params = preset_sweep([PRESET, f"scale={scale}"])
    assert str(mode) == "RunMode.MULTIRUN" and list(params) == ["part"]
    trained, hursts, sigmas = set(), [], set()
    for part in params["part"].split(","):
        cfg = compose_config([PRESET, f"scale={scale}", f"part={part}"])
        validate(cfg)
        if cfg.task.name == "train":
            assert cfg.noise.name == "sgd" and list(cfg.analysis) == ["noise_memory"] and cfg.dataset.name == dataset
            trained.add(cfg.model.name)
        else:
            assert cfg.task.name == "escape" and cfg.landscape.name == "double_well" and cfg.noise.name == "gd_fbm"
            assert cfg.task.criterion == "transition"
            assert (cfg.task.replicas, cfg.task.max_steps) == (replicas, budget)  # the scale sizes the escape jobs too
            hursts.append(cfg.noise.hurst)
            sigmas.add(cfg.noise.sigma)
    assert trained == models
    assert hursts == [0.3, 0.4, 0.5, 0.6, 0.7] and len(sigmas) == 1  # the same per-step power at every H


def test_tiny_sweep_runs_and_its_report_shows_hurst_and_the_fit_against_h(tmp_cwd):
    # one job of each kind at a tiny size: the command line's `part` replaces the preset's list
    proc = cli([PRESET, "part=fbm_memory/sgn_mlp,fbm_memory/escape_h05,fbm_memory/escape_h06,fbm_memory/escape_h07",
                "hydra.sweep.dir=sweep", "trainer.steps=300", "logger=none", "device=cpu", "trainer.progress=false",
                "trainer.figures=false"], cwd=tmp_cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads((tmp_cwd / "sweep" / str(j) / "summary.json").read_text()) for j in range(4)]
    assert 0.2 < summaries[0]["noise_memory/hurst_whittle/median"] < 0.8
    means = [s["escape/mean_steps"] for s in summaries[1:]]
    assert all(s["escape/fraction"] == 1.0 for s in summaries[1:])
    assert means[0] > means[1] > means[2]  # here escape gets faster with H (README: against the paper's claim)
    preset_report(tmp_cwd / "sweep", "Jobs", "Noise memory", "Escape: sweep-level fits")
