"""Analytic loss landscapes (`landscape` group): test oracles whose minima, saddles and curvatures
are known in closed form, so escape times can be set against theory (Kramers, Xie et al.).

A landscape is a loss U on θ ∈ R^d, evaluated on a stack of replicas θ of shape (R, d). It has no
samples: there is no minibatch noise and no SGD covariance, only injected noise.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig

from sgdexp.errors import ConfigError
from sgdexp.registry import Registry

LANDSCAPES: Registry[Callable[[DictConfig], "Landscape"]] = Registry("landscape.name")


class Landscape:
    """U(θ) on rows of θ (R, d), its known minimum θ*, and optionally a reaction coordinate.

    `progress(θ)` (R,) grows along the way out of the minimum; `saddle` is its value at the first
    saddle (ridge) and `transition` halfway from there to the next minimum: the `saddle` and
    `transition` escape criteria. None where the landscape has no barrier (quadratic).
    """

    dim: int
    saddle: Optional[float] = None
    transition: Optional[float] = None

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def minimum(self) -> torch.Tensor:
        raise NotImplementedError

    def progress(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """∇U on each row, by autograd (rows are independent: the sum's gradient is each row's)."""
        with torch.enable_grad():
            x = theta.detach().requires_grad_(True)
            return torch.autograd.grad(self.loss(x).sum(), x)[0]


class DoubleWell(Landscape):
    """U = ΔL (θ₁² − 1)² + ½ Σ_{j≥2} κ_j θ_j²; θ* = (−1, 0, …), saddle θ₁ = 0, transition θ₁ = ½."""

    saddle, transition = 0.0, 0.5

    def __init__(self, dim: int, barrier: float, transverse):
        self.dim, self.barrier = dim, float(barrier)
        kappa = list(transverse)
        if dim > 1 and len(kappa) not in (1, dim - 1):
            raise ConfigError("landscape.transverse", kappa, f"one value or dim − 1 = {dim - 1} values")
        self.kappa = torch.tensor((kappa * (dim - 1)) if len(kappa) == 1 else kappa[: dim - 1], dtype=torch.float32)

    def loss(self, theta):
        u = self.barrier * (theta[:, 0].square() - 1.0).square()
        if self.dim > 1:
            u = u + 0.5 * (theta[:, 1:].square() * self.kappa.to(theta.device)).sum(dim=1)
        return u

    def grad(self, theta):  # analytic: the escape loop calls it every step
        g = torch.empty_like(theta)
        x = theta[:, 0]
        g[:, 0] = 4.0 * self.barrier * x * (x.square() - 1.0)
        if self.dim > 1:
            g[:, 1:] = theta[:, 1:] * self.kappa.to(theta.device)
        return g

    def minimum(self):
        theta = torch.zeros(self.dim)
        theta[0] = -1.0
        return theta

    def progress(self, theta):
        return theta[:, 0]


# Styblinski–Tang per coordinate: g(x) = x⁴ − 16x² + 5x, g'(x) = 4x³ − 32x + 5; its three roots
# (the two minima and the ridge between them), to float64 precision.
_ST_ROOTS = np.sort(np.roots([4.0, 0.0, -32.0, 5.0]).real)  # ≈ −2.9035, 0.1567, 2.7468


class StyblinskiTang(Landscape):
    """U = ½ Σ_j (θ_j⁴ − 16 θ_j² + 5 θ_j) (Xie et al.'s toy). θ* = the shallower minimum in every
    coordinate (θ_j ≈ 2.7468); progress = max_j (−θ_j): the saddle is a coordinate crossing the
    ridge θ_j ≈ 0.1567, the transition one halfway from there to the deep minimum θ_j ≈ −2.9035."""

    def __init__(self, dim: int):
        self.dim = dim
        deep, ridge, shallow = (float(r) for r in _ST_ROOTS)
        self.start = shallow
        self.saddle = -ridge
        self.transition = -(ridge + deep) / 2.0

    def loss(self, theta):
        return 0.5 * (theta.pow(4) - 16.0 * theta.square() + 5.0 * theta).sum(dim=1)

    def grad(self, theta):
        return 0.5 * (4.0 * theta.pow(3) - 32.0 * theta + 5.0)

    def minimum(self):
        return torch.full((self.dim,), self.start)

    def progress(self, theta):
        return (-theta).amax(dim=1)


class Quadratic(Landscape):
    """U = ½ Σ_j λ_j θ_j² with a chosen Hessian spectrum λ; θ* = 0; no barrier."""

    def __init__(self, dim: int, spectrum, top: float, bottom: float):
        if len(spectrum) and len(spectrum) != dim:
            raise ConfigError("landscape.spectrum", list(spectrum), f"empty or landscape.dim = {dim} values")
        values = list(spectrum) if len(spectrum) else np.geomspace(top, bottom, dim).tolist()
        self.dim, self.eigenvalues = dim, torch.tensor(values, dtype=torch.float32)

    def loss(self, theta):
        return 0.5 * (theta.square() * self.eigenvalues.to(theta.device)).sum(dim=1)

    def grad(self, theta):
        return theta * self.eigenvalues.to(theta.device)

    def minimum(self):
        return torch.zeros(self.dim)


@LANDSCAPES.register("double_well")
def double_well(cfg: DictConfig) -> Landscape:
    return DoubleWell(cfg.dim, cfg.barrier, cfg.transverse)


@LANDSCAPES.register("styblinski_tang")
def styblinski_tang(cfg: DictConfig) -> Landscape:
    return StyblinskiTang(cfg.dim)


@LANDSCAPES.register("quadratic")
def quadratic(cfg: DictConfig) -> Landscape:
    return Quadratic(cfg.dim, cfg.spectrum, cfg.top, cfg.bottom)


def build_landscape(cfg: DictConfig) -> Optional[Landscape]:
    """The configured landscape, or None for `landscape=none`."""
    return None if cfg.name == "none" else LANDSCAPES.get(cfg.name)(cfg)


def kramers_steps(barrier: float, lr: float, sigma: float) -> float:
    """Kramers' mean escape time in steps over the double well's barrier for GD + white noise:
    2π/(η √(U''min |U''saddle|)) exp(ΔL/T), T = ησ²/2, U''min = 8ΔL, |U''saddle| = 4ΔL."""
    temperature = lr * sigma ** 2 / 2.0
    return 2.0 * math.pi / (lr * math.sqrt(32.0) * barrier) * math.exp(barrier / temperature)
