"""Analyses: small objects with a schedule that measure during training and return plain numbers.

An analysis knows nothing of W&B: `compute` returns a `Measurement` (scalars for the metrics,
arrays for histograms and curves) and the tracker does the rest. Analyses draw from their own
generator and leave `.grad`, the model's mode and BatchNorm statistics as they found them, so a run
trains the same with or without them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch
from omegaconf import DictConfig

from sgdexp.gradients import GradientSource
from sgdexp.seeding import derive_seed


@dataclass
class Measurement:
    scalars: Dict[str, float] = field(default_factory=dict)
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)


class Analysis:
    """`due(step)` after step `step`'s update (step 0: the initial weights) → `compute(step)`.

    Analyses that record each step's gradient signal (windows along the trajectory) also implement
    `observing(step)` / `observe(step)`, called after the noise mode wrote `.grad` and before the
    optimizer uses it (`records_steps = True`). Analyses that follow the weights implement
    `recording(step)` / `record(step)`, called after step `step`'s update (and for step 0 on the
    initial weights) without logging anything (`records_weights = True`).
    """

    records_steps = False
    records_weights = False
    # Analyses that read another's measurement at the same step (`connect`) have a later `order`:
    # the training loop measures in that order (stable: otherwise the config's).
    order = 0
    # Analyses that take the loss's second derivative through the model (Hessian-vector products):
    # `build_analyses` checks before training that torch can (`sgdexp.curvature.check_second_order`).
    second_order = False
    # why this run gives the analysis no gradient noise to measure (`without_noise`): never due then
    silent: Optional[str] = None

    def __init__(self, cfg: DictConfig, source: GradientSource, noise_cfg: DictConfig, seed: int, steps: int):
        self.cfg, self.source, self.noise_cfg, self.steps = cfg, source, noise_cfg, steps
        self.name = cfg.name
        self.generator = torch.Generator().manual_seed(derive_seed(seed, f"analysis/{cfg.name}"))
        self.last: Dict[str, float] = {}
        self.seconds = 0.0  # wall time spent in this analysis' calls (the training loop times them)
        # The schedule as plain ints: `due` and `observing` run every training step.
        self.start, self.every = int(cfg.start), int(cfg.every)

    def connect(self, analyses: Dict[str, "Analysis"], noise=None) -> None:
        """Called once with the run's analyses by name, to keep those whose measurements it reads,
        and the run's noise mode (`sgdexp.noise.NoiseMode`; None where there is none), for those
        that ask it what noise it adds (`NoiseMode.step_noise`)."""

    def end_at(self, step: int) -> None:
        """The run ends at `step`, before `trainer.steps` (a stopping rule, `trainer.stop_at_*`): what
        an analysis measures at the end of the run, it measures there."""
        self.steps = step

    def without_noise(self, why: str) -> None:
        """This run adds no gradient noise for the analysis to measure (`why`): it says so once, and it
        is never due (numbers taken from rounding errors would read as a tail index or a memory)."""
        self.silent = why
        logging.getLogger(type(self).__module__).info(
            "%s: %s, so there is no gradient noise to measure: no %s/* keys in this run", self.name, why, self.name)

    def due(self, step: int) -> bool:
        return (self.silent is None and step >= self.start
                and ((step - self.start) % self.every == 0 or step == self.steps))

    def compute(self, step: int) -> Optional[Measurement]:
        raise NotImplementedError

    def observing(self, step: int) -> bool:
        return False

    def observe(self, step: int) -> None:
        pass

    def recording(self, step: int) -> bool:
        return False

    def record(self, step: int) -> None:
        pass

    def state_dict(self) -> Dict:
        return {"generator": self.generator.get_state(), "last": {k: float(v) for k, v in self.last.items()},
                "seconds": self.seconds}

    def load_state_dict(self, state: Dict) -> None:
        self.generator.set_state(state["generator"])
        self.last = dict(state["last"])
        self.seconds = float(state.get("seconds", 0.0))


class CoordinateSample:
    """A seeded sample of about k coordinates of the flat parameter vector, with each one's layer.

    Layers are parameter tensors (`0.weight`, `0.bias`, ...). Sampling is stratified: each layer
    gets its share of k by size, but at least `min_per_layer` coordinates (all of them when it has
    fewer), so a small bias vector is not lost among large weights and its quantiles mean something.
    The sample can therefore exceed k by up to `min_per_layer` per layer.
    """

    def __init__(self, source: GradientSource, k: int, generator: torch.Generator, min_per_layer: int = 16):
        names, numels = list(source.named_params), source.numels
        offsets = np.cumsum([0] + numels)
        if k == 0 or k >= source.dim:
            index = torch.arange(source.dim)
        else:
            share = np.maximum(min_per_layer, np.floor(k * np.array(numels) / source.dim)).astype(int)
            parts = [torch.randperm(n, generator=generator)[: min(s, n)] + int(o)
                     for n, s, o in zip(numels, share, offsets)]
            index = torch.cat(parts).sort().values
        self.index = index.to(source.data.x_train.device)
        layer_of = np.searchsorted(offsets, index.numpy(), side="right") - 1
        self.layers: Dict[str, np.ndarray] = {names[i]: np.flatnonzero(layer_of == i) for i in range(len(names))}
        self.layers = {k: v for k, v in self.layers.items() if len(v)}

    def __len__(self) -> int:
        return len(self.index)


QUANTILE_MIN = 8  # fewer values than this: quartiles would be a re-labelling of the values themselves


def layer_quantiles(prefix: str, values: np.ndarray, layers: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Median and quartiles of per-coordinate `values` for each layer, as flat metric names.

    A layer with fewer than `QUANTILE_MIN` finite values reports them as they are instead,
    `<prefix>/<layer>/value<i>`, so that one coordinate is never passed off as a distribution."""
    out = {}
    for layer, idx in layers.items():
        v = values[idx]
        v = v[np.isfinite(v)]
        if len(v) >= QUANTILE_MIN:
            q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
            out.update({f"{prefix}/{layer}/median": float(med), f"{prefix}/{layer}/q1": float(q1),
                        f"{prefix}/{layer}/q3": float(q3)})
        else:
            out.update({f"{prefix}/{layer}/value{i}": float(x) for i, x in enumerate(v)})
    return out
