"""The ddt_escape preset (Xie et al.): both scales compose and every job validates as an escape run of
SGD against white noise at matched power, swept over B."""
from __future__ import annotations

import itertools

import pytest

from conftest import preset_sweep
from sgdexp.config import compose_config, validate

PRESET = "+experiment=ddt_escape"


@pytest.mark.parametrize("scale,dataset,model,batches,minima", [
    ("small", "teacher_student", "mlp", "10,12,14,16", "0.4,0.6,0.8"),
    ("paper", "cifar10", "resnet", "64,128,256", "0.1,0.2")])
def test_both_scales_compose_and_every_job_validates(scale, dataset, model, batches, minima):
    mode, params = preset_sweep([PRESET, f"scale={scale}"])
    assert str(mode) == "RunMode.MULTIRUN"
    assert params["noise"] == "sgd,gd_white" and params["noise.batch_size"] == batches
    assert params["task.pretrain_lr"] == minima  # a sharper and a flatter minimum (GD settles at λ_max < 2/lr)
    modes = set()
    for combo in itertools.product(*(v.split(",") for v in params.values())):
        cfg = compose_config([PRESET, f"scale={scale}"] + [f"{k}={v}" for k, v in zip(params, combo)])
        validate(cfg)
        assert cfg.task.name == "escape" and cfg.task.pretrain_steps > 0 and cfg.task.criterion == "loss"
        assert cfg.dataset.name == dataset and cfg.model.name == model
        if cfg.noise.name == "gd_white":
            assert cfg.noise.sigma == "matched"  # the same power as SGD's batches of this B
        modes.add(cfg.noise.name)
    assert modes == {"sgd", "gd_white"}


def test_tiny_sweep_from_two_minima_fits_each_and_reports(tmp_cwd):
    import json

    from conftest import cli, preset_report

    proc = cli([PRESET, "noise=sgd", "noise.batch_size=10,12,14", "task.pretrain_lr=0.4,0.6", "task.pretrain_steps=300",
                "task.replicas=8", "task.max_steps=500", "task.tail_batches=0", "task.sharpness_probes=12",
                "hydra.sweep.dir=sweep", "logger=none", "device=cpu", "trainer.figures=false"], cwd=tmp_cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharp = {json.loads((tmp_cwd / "sweep" / str(j) / "summary.json").read_text())["sharpness/top_eigenvalue"]
             for j in (0, 3)}
    assert len(sharp) == 2  # two minima of different sharpness
    # the three jobs of each minimum ran its pretraining once, in the sweep's hidden .pretrain/
    shared = sorted(p for p in (tmp_cwd / "sweep" / ".pretrain").iterdir() if p.is_dir())
    assert len(shared) == 2 and all((p / "checkpoints" / "last.pt").is_file() for p in shared)
    assert not any((tmp_cwd / "sweep" / str(j) / "pretrain").exists() for j in range(6))
    assert {json.loads((p / "summary.json").read_text())["step"] for p in shared} == {300}
    from sgdexp.escape_sweeps import sweep_fits

    fits = sweep_fits(tmp_cwd / "sweep").fits
    assert {"batch_over_lr | task.pretrain_lr=0.4", "batch_over_lr | task.pretrain_lr=0.6"} <= set(fits)
    html = preset_report(tmp_cwd / "sweep", "Jobs", "Escape: sweep-level fits", "Escape survival")
    assert "task.pretrain_lr=0.6" in html
