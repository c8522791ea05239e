"""Measurements taken during training on a schedule (the `analysis` config group, a list)."""
from __future__ import annotations

from typing import List

from omegaconf import DictConfig

from sgdexp.analysis.base import Analysis, Measurement
from sgdexp.analysis.diffusion import Diffusion
from sgdexp.analysis.curvature import Curvature
from sgdexp.analysis.generalization import Generalization
from sgdexp.analysis.noise_memory import NoiseMemory
from sgdexp.analysis.noise_stats import NoiseStats
from sgdexp.curvature import check_second_order
from sgdexp.gradients import GradientSource
from sgdexp.models import model_key
from sgdexp.registry import Registry

ANALYSES: Registry[type] = Registry("analysis.name")
ANALYSES.register("noise_stats")(NoiseStats)
ANALYSES.register("noise_memory")(NoiseMemory)
ANALYSES.register("diffusion")(Diffusion)
ANALYSES.register("curvature")(Curvature)
ANALYSES.register("generalization")(Generalization)


def build_analyses(cfg: DictConfig, source: GradientSource, noise=None) -> List[Analysis]:
    """The run's analyses in measuring order, connected to each other and to the noise mode `noise`."""
    analyses = [ANALYSES.get(a.name)(a, source, cfg.noise, cfg.seed, cfg.trainer.steps) for a in cfg.analysis.values()]
    second_order = [a.name for a in analyses if a.second_order]
    if second_order:
        check_second_order(source, *model_key(cfg.model), f"analysis=[{','.join(second_order)}]")
    by_name = {a.name: a for a in analyses}
    for a in analyses:
        a.connect(by_name, noise)
    return sorted(analyses, key=lambda a: a.order)


__all__ = ["ANALYSES", "Analysis", "Measurement", "build_analyses"]
