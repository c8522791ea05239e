"""Optimizers from the `optimizer` group; they receive whatever gradient signal the noise mode wrote."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from omegaconf import DictConfig

from sgdexp.errors import ConfigError
from sgdexp.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer.name")


@OPTIMIZERS.register("sgd")
def sgd(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.nesterov and cfg.momentum == 0:
        raise ConfigError("optimizer.nesterov", True, "only with optimizer.momentum > 0")
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


@OPTIMIZERS.register("adam")
def adam(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(cfg, params)
