"""Minibatch samplers over the indices of a dataset held as tensors, seeded by their own generator."""
from __future__ import annotations

from typing import Dict

import torch

from sgdexp.registry import Registry

SAMPLERS: Registry[type] = Registry("noise.sampler")


class Sampler:
    """Draws index batches of a fixed size `batch_size` from `range(n)`."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.batch_size, self.device = n, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)  # on the CPU: same draws on every device

    def next(self) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> Dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict) -> None:
        self.generator.set_state(state["generator"])


@SAMPLERS.register("epoch")
class EpochSampler(Sampler):
    """A fresh permutation each epoch, cut into batches of exactly `batch_size`: every sample once.

    When `batch_size` does not divide n, the n mod B samples left at the end of a permutation sit
    that epoch out (drop-last), so that every step has the same batch size and hence the same noise.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        super().__init__(n, batch_size, seed, device)
        self.batches_per_epoch = n // batch_size
        self.epoch, self.position = 0, self.batches_per_epoch  # start with a fresh permutation
        self.perm = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        if self.position == self.batches_per_epoch:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.position = 0
            self.epoch += 1
        start = self.position * self.batch_size
        self.position += 1
        return self.perm[start : start + self.batch_size]

    def state_dict(self) -> Dict:
        return {**super().state_dict(), "perm": self.perm.cpu(), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self.perm = state["perm"].to(self.device)
        self.epoch, self.position = state["epoch"], state["position"]


@SAMPLERS.register("replacement")
class ReplacementSampler(Sampler):
    """I.i.d. batches of `batch_size` indices drawn uniformly with replacement: SGN covariance C/B."""

    def next(self) -> torch.Tensor:
        return torch.randint(self.n, (self.batch_size,), generator=self.generator).to(self.device)


def random_batches(n: int, batch_size: int, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`count` independent batches (rows) of `batch_size` distinct indices from range(n), for
    measurements at fixed weights (each batch as an epoch sampler would draw it)."""
    rows = [torch.randperm(n, generator=generator)[:batch_size] for _ in range(count)]
    return torch.stack(rows).to(device)


def make_sampler(name: str, n: int, batch_size: int, seed: int, device: torch.device) -> Sampler:
    return SAMPLERS.get(name)(n, batch_size, seed, device)
