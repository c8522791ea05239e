"""Noise modes: each decides the gradient signal of a step and writes it into `.grad`.

`torch.optim` then takes the step, so momentum, weight decay and schedules work with every mode.
"""
from __future__ import annotations

from typing import Dict

import torch
from omegaconf import DictConfig

from sgdexp.data import make_sampler
from sgdexp.gradients import GradientSource
from sgdexp.registry import Registry
from sgdexp.seeding import derive_seed

MODES: Registry[type] = Registry("noise.name")


class NoiseMode:
    """Base class: `apply(step)` writes the step's gradient signal into `.grad` and returns the loss."""

    def __init__(self, cfg: DictConfig, source: GradientSource, seed: int, device: torch.device):
        self.cfg, self.source, self.device = cfg, source, device

    def apply(self, step: int) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> Dict[str, float]:
        """The mode's own statistics for the last logged step (none for noiseless modes)."""
        return {}

    def state_dict(self) -> Dict:
        return {}

    def load_state_dict(self, state: Dict) -> None:
        pass


@MODES.register("sgd")
class MinibatchSGD(NoiseMode):
    """g_B(θ) on batches of `noise.batch_size` drawn by `noise.sampler`."""

    def __init__(self, cfg, source, seed, device):
        super().__init__(cfg, source, seed, device)
        self.sampler = make_sampler(cfg.sampler, source.n_train, cfg.batch_size, derive_seed(seed, "sampler"), device)

    def apply(self, step: int) -> torch.Tensor:
        return self.source.backward_batch(self.sampler.next())

    def metrics(self) -> Dict[str, float]:
        epoch = getattr(self.sampler, "epoch", None)
        return {} if epoch is None else {"epoch": epoch}

    def state_dict(self) -> Dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: Dict) -> None:
        self.sampler.load_state_dict(state["sampler"])


@MODES.register("gd")
class FullBatchGD(NoiseMode):
    """∇L(θ) on the whole training set: no noise."""

    def apply(self, step: int) -> torch.Tensor:
        return self.source.backward_full()


def make_noise_mode(cfg: DictConfig, source: GradientSource, seed: int, device: torch.device) -> NoiseMode:
    return MODES.get(cfg.name)(cfg, source, seed, device)
