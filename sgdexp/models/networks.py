"""Networks for any dataset: input shape and output count come from the data.

`resnet` is the CIFAR-style ResNet of He et al. (2016, sec. 4.2): a 3x3 stride-1 stem, three stages
of basic blocks with widths w, 2w, 4w and depth 6n + 2 (ResNet-20 by default). It is written here
because timm and torchvision only ship ImageNet ResNets (7x7 stride-2 stem and max-pool), which
shrink 8x8 or 32x32 images to nothing; `vgg` likewise pools only while the image is larger than 1x1.
"""
from __future__ import annotations

import math
from typing import Callable, List, Tuple

import torch
from omegaconf import DictConfig
from torch import nn

from sgdexp.errors import ConfigError
from sgdexp.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model.name")

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build_model(cfg: DictConfig, input_shape: Tuple[int, ...], num_outputs: int) -> nn.Module:
    return MODELS.get(cfg.name)(cfg, tuple(input_shape), num_outputs)


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # groups of 8 channels (at least one group)
        return nn.GroupNorm(max(1, channels // 8), channels)
    return nn.Identity()


def _image(input_shape: Tuple[int, ...], model: str) -> Tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError("model.name", model, f"an image dataset (C, H, W) for this model; the data has shape {input_shape}: use model=mlp or model=linear")
    return input_shape  # type: ignore[return-value]


@MODELS.register("linear")
def linear(cfg: DictConfig, input_shape, num_outputs: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs, bias=cfg.bias))


@MODELS.register("mlp")
def mlp(cfg: DictConfig, input_shape, num_outputs: int) -> nn.Module:
    layers: List[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for w in cfg.widths:
        layers += [nn.Linear(width, w), _ACTIVATIONS[cfg.activation]()]
        width = w
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def _conv_net(input_shape, num_outputs: int, channels, convs_per_stage: int, norm: str, activation: str,
              hidden: int, model: str) -> nn.Module:
    """Stages of 3x3 convolutions (each followed by `norm` and `activation`), a 2x2 max-pool after
    each stage while the image is larger than 1x1, global average pooling and a one-hidden-layer head."""
    c, h, _ = _image(input_shape, model)
    act = _ACTIVATIONS[activation]
    layers: List[nn.Module] = []
    for width in channels:
        for _ in range(convs_per_stage):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=norm == "none"), _norm2d(norm, width), act()]
            c = width
        if h > 1:
            layers.append(nn.MaxPool2d(2))
            h //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, hidden), act(), nn.Linear(hidden, num_outputs)]
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def cnn(cfg: DictConfig, input_shape, num_outputs: int) -> nn.Module:
    return _conv_net(input_shape, num_outputs, cfg.channels, 1, cfg.norm, cfg.activation, cfg.hidden, "cnn")


@MODELS.register("vgg16")  # conf/model/vgg16.yaml: the same network at VGG-16 sizes
@MODELS.register("vgg")
def vgg(cfg: DictConfig, input_shape, num_outputs: int) -> nn.Module:
    norm = "batch" if cfg.batch_norm else "none"
    return _conv_net(input_shape, num_outputs, cfg.channels, cfg.convs_per_stage, norm, "relu", cfg.hidden, "vgg")


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        self.bn2 = _norm2d(norm, c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias), _norm2d(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, in_channels: int, num_outputs: int, depth: int, width: int, norm: str):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=norm == "none"),
                                  _norm2d(norm, width), nn.ReLU())
        blocks, c = [], width
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(c, w, 2 if (stage > 0 and i == 0) else 1, norm))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@MODELS.register("resnet")
def resnet(cfg: DictConfig, input_shape, num_outputs: int) -> nn.Module:
    c, _, _ = _image(input_shape, "resnet")
    if (cfg.depth - 2) % 6:
        raise ConfigError("model.depth", cfg.depth, "6n + 2 (8, 14, 20, 32, 44, 56, 110, ...)")
    return CifarResNet(c, num_outputs, cfg.depth, cfg.width, cfg.norm)
