"""`model=timm model.arch=<name>`: any timm architecture, untrained, for the data's channels and classes,
with the small-image stem where the architecture allows; an unknown name suggests close ones."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import make_cfg, train_run
from sgdexp.errors import ConfigError
from sgdexp.tasks.setup import build_setup

ONE_STEP = ["model=timm", "trainer.steps=1", "trainer.eval_every=0", "trainer.log_every=1",
            "trainer.checkpoint_every=0", "noise.batch_size=16", "dataset.subset=64",
            "dataset.test_fraction=0.05"]  # 64 training and 90 test images: the cost of a step is the models'


@pytest.mark.parametrize("arch,stem", [
    ("resnet10t", "conv1.0"),                # deep stem, stride 2, then a max-pool: both adapted
    ("mobilenetv3_small_050", "conv_stem"),  # 3x3 stride-2 conv, no pool
    pytest.param("convnext_atto", "stem.0", marks=pytest.mark.slow),  # 4x4 stride-4 patchify conv
    pytest.param("vit_tiny_patch16_224", None, marks=pytest.mark.slow),  # patch embedding: image and patch size
])
def test_timm_builds_and_trains_a_step_on_digits(tmp_path, arch, stem):
    setup = build_setup(make_cfg(ONE_STEP + [f"model.arch={arch}"]))
    model = setup.model
    assert not any(isinstance(m, nn.MaxPool2d) for n, m in model.named_modules() if "layer" not in n)
    if stem is not None:
        conv = model.get_submodule(stem)
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.in_channels == 1
    else:
        assert model.patch_embed.proj.in_channels == 1 and model.patch_embed.img_size == (8, 8)
    model.eval()
    assert model(setup.data.x_train[:4]).shape == (4, 10)
    summary = train_run(tmp_path, ONE_STEP + [f"model.arch={arch}"])
    assert summary["status"] == "completed" and summary["step"] == 1
    assert math.isfinite(summary["train/loss"]) and 0.0 <= summary["test/accuracy"] <= 1.0
    # the step moved the weights of the same (seeded) initial model
    trained = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    initial = model.state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if initial[k].is_floating_point())


def test_small_input_stem_can_be_switched_off():
    model = build_setup(make_cfg(ONE_STEP + ["model.arch=resnet18", "model.small_input_stem=false"])).model
    assert model.conv1.stride == (2, 2) and isinstance(model.maxpool, nn.MaxPool2d)


def test_unknown_arch_is_one_line_with_close_names():
    with pytest.raises(ConfigError) as err:
        build_setup(make_cfg(["model=timm", "model.arch=resnt18"]))
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.arch='resnt18' is not allowed")
    assert "did you mean resnet18" in message
