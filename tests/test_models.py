"""Every registered model runs forward and backward on every kind of input it accepts."""
from __future__ import annotations

import pytest
import torch

from conftest import make_cfg
from sgdexp.errors import ConfigError
from sgdexp.models import MODELS, build_model

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32), "vector": (12,)}
IMAGE_ONLY = {"cnn", "resnet", "vgg", "vgg16", "timm"}


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", list(SHAPES))
def test_forward_backward(name, shape):
    input_shape = SHAPES[shape]
    cfg = make_cfg([f"model={name}"]).model
    if name in IMAGE_ONLY and len(input_shape) != 3:
        with pytest.raises(ConfigError, match="model.name"):
            build_model(cfg, input_shape, 7)
        return
    torch.manual_seed(0)
    model = build_model(cfg, input_shape, 7)
    x = torch.randn(4, *input_shape)
    out = model(x)
    assert out.shape == (4, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_resnet_depth_is_6n_plus_2():
    cfg = make_cfg(["model=resnet", "model.depth=21"]).model
    with pytest.raises(ConfigError, match="model.depth=21"):
        build_model(cfg, (3, 32, 32), 10)
    cfg = make_cfg(["model=resnet"]).model
    convs = [m for m in build_model(cfg, (3, 32, 32), 10).modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # ResNet-20: 19 3x3 convolutions + 1 linear layer
