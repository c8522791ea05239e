"""Everything a run is built from, constructed (and checked) before anything is written."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from sgdexp.data import Dataset, load_dataset
from sgdexp.errors import ConfigError
from sgdexp.gradients import GradientSource
from sgdexp.models import build_model
from sgdexp.noise.modes import NoiseMode, make_noise_mode
from sgdexp.optim import build_optimizer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "auto or cpu: no CUDA device is visible to torch")
    return torch.device(name)


@dataclass
class Setup:
    device: torch.device
    data: Dataset
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    source: GradientSource
    noise: NoiseMode


def build_setup(cfg: DictConfig) -> Setup:
    """Data, model, optimizer and noise mode, all seeded from `cfg.seed`; raises ConfigError on bad input."""
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, device)
    data.check_samples("noise.batch_size", cfg.noise.batch_size)
    torch.manual_seed(cfg.seed)  # model initialisation
    model = build_model(cfg.model, data.input_shape, data.num_outputs).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    graph_mib = cfg.trainer.hvp_graph_mib
    source = GradientSource(model, data, cfg.trainer.chunk_size, cfg.trainer.compile,
                            graph_budget=None if graph_mib is None else int(graph_mib) << 20)
    noise = make_noise_mode(cfg.noise, source, cfg.seed, device)
    return Setup(device, data, model, optimizer, source, noise)
