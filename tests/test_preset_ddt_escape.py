"""The ddt_escape preset (Xie et al.): both scales compose and every job validates as an escape run of
SGD against white noise at matched power, swept over B."""
from __future__ import annotations

import itertools

import pytest

from conftest import preset_sweep
from sgdexp.config import compose_config, validate

PRESET = "+experiment=ddt_escape"


@pytest.mark.parametrize("scale,dataset,model,batches", [("small", "teacher_student", "mlp", "10,12,14,16"),
                                                         ("paper", "cifar10", "resnet", "64,128,256")])
def test_both_scales_compose_and_every_job_validates(scale, dataset, model, batches):
    mode, params = preset_sweep([PRESET, f"scale={scale}"])
    assert str(mode) == "RunMode.MULTIRUN"
    assert params["noise"] == "sgd,gd_white" and params["noise.batch_size"] == batches
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
