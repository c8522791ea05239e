"""Noise modes: each decides the gradient signal of a step and writes it into `.grad`.

`torch.optim` then takes the step, so momentum, weight decay and schedules work with every mode.
The injected modes write ∇L + σ ζ_t; with `sigma: matched`, σ is re-estimated every `match_every`
steps so that the injected power E|σζ|² equals the batch-noise power of SGD's sampler at the current
weights: (N − B)/(N − 1) · tr(C)/B for `epoch` batches (B distinct samples), tr(C)/B for
`replacement` batches (`noise.population`, default `noise.sampler`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from omegaconf import DictConfig

from sgdexp.data import make_sampler, random_batches
from sgdexp.gradients import GradientSource
from sgdexp.noise.generators import AntiCorrelatedNoise, NoiseSource, StableNoise, StreamingFGN, WhiteNoise
from sgdexp.registry import Registry
from sgdexp.seeding import derive_seed
from sgdexp.stats import autocorrelation, epoch_noise_autocorrelation, hurst_exponent, tail_index, trace_from_minibatch_noise

MODES: Registry[type] = Registry("noise.name")


def has_memory(autocorrelation: np.ndarray) -> bool:
    """Whether a noise of autocorrelation ρ(0 … L) is correlated in time (some ρ(k ≥ 1) ≠ 0)."""
    return bool(np.any(np.asarray(autocorrelation)[1:] != 0))


@dataclass
class StepNoise:
    """The noise a mode adds to the gradient in one step, as a model for predictions on a fixed
    Hessian (the curvature analysis): its covariance is `covariance_scale` · C (C the per-sample
    gradients' covariance, for SGD's batches and gd_sgdcov) plus `isotropic` · I (injected ζ), and
    its autocorrelation in time is `autocorrelation` = ρ(0 … L), ρ(0) = 1, the same along every
    direction, 0 beyond L."""
    autocorrelation: np.ndarray
    covariance_scale: float = 0.0
    isotropic: float = 0.0

    @property
    def correlated(self) -> bool:
        """Whether the noise has memory (a prediction for uncorrelated noise then does not hold)."""
        return has_memory(self.autocorrelation)


class NoiseMode:
    """Base class: `apply(step)` writes the step's gradient signal into `.grad` and returns the loss."""

    def __init__(self, cfg: DictConfig, source: GradientSource, seed: int, device: torch.device):
        self.cfg, self.source, self.device = cfg, source, device

    def apply(self, step: int, measure: bool = False) -> torch.Tensor:
        """Write step `step`'s gradient signal into `.grad`; return the loss it was computed on.

        `measure`: the step will be logged, so the mode should have its `metrics()` ready.
        """
        raise NotImplementedError

    def metrics(self) -> Dict[str, float]:
        """The mode's own statistics for the last logged step (none for noiseless modes)."""
        return {}

    def step_noise(self) -> Optional[StepNoise]:
        """The step's noise as a `StepNoise` at the current weights, or None: no noise (gd), no finite
        variance (SαS with α < 2), or a matched σ not estimated yet (before the first step)."""
        return None

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
        self._step_noise: Optional[StepNoise] = None

    def apply(self, step: int, measure: bool = False) -> torch.Tensor:
        return self.source.backward_batch(self.sampler.next())

    def step_noise(self) -> StepNoise:
        """Cov(g_B) = f · C/B (`population_factor`); epoch batches of one permutation are
        anti-correlated (`epoch_noise_autocorrelation`), with-replacement batches independent."""
        if self._step_noise is None:  # fixed by the configuration
            n, b = self.source.n_train, int(self.cfg.batch_size)
            epoch = self.cfg.sampler == "epoch"
            self._step_noise = StepNoise(epoch_noise_autocorrelation(n, b) if epoch else np.ones(1),
                                         covariance_scale=population_factor(self.cfg.sampler, n, b) / b)
        return self._step_noise

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

    def apply(self, step: int, measure: bool = False) -> torch.Tensor:
        return self.source.backward_full()


class InjectedNoise(NoiseMode):
    """∇L(θ) + σ ζ_t with ζ_t from a stateful generator (`make_zeta`), one value per parameter.

    Every `match_every` steps the target power (the batch-noise power E|g_B − ∇L|² of the
    population's sampler) is estimated with its standard error and logged as `noise/target_power`
    beside the injected power `noise/power` = σ² d Var(ζ); `sigma: matched` sets σ from it. The first `record_coords` coordinates of ζ are recorded over windows of `record_steps` steps;
    when a window is full, `summarise` turns it into the mode's own statistics (e.g. the Hurst
    exponent for fGn), logged with the injected noise's norm and σ.
    """

    zeta_variance = 1.0  # per-coordinate variance of ζ, for the matched σ

    def __init__(self, cfg, source, seed, device):
        super().__init__(cfg, source, seed, device)
        self.generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "noise"))
        self.match_generator = torch.Generator().manual_seed(derive_seed(seed, "noise/match"))
        self.zeta = self.make_zeta(source.dim)
        self.batch_size, self.match_every = int(cfg.batch_size), int(cfg.match_every)  # read every step
        self.matched = cfg.sigma == "matched"
        self.sigma: Optional[float] = None if self.matched else float(cfg.sigma)
        self.population = cfg.population or cfg.sampler
        # E|g_B − ∇L|² = factor · tr(C)/B: B distinct samples of N (epoch) or B i.i.d. draws (replacement)
        self.power_factor = population_factor(self.population, source.n_train, self.batch_size)
        self.target_power = self.target_power_se = float("nan")
        k = min(cfg.record_coords, source.dim)
        self.record = torch.zeros(cfg.record_steps, k, device=device)
        self.recorded = 0
        self.stats: Dict[str, float] = {}
        self.noise_norm = torch.zeros((), device=device)
        self._memory: Optional[np.ndarray] = None  # ζ's autocovariance (`step_noise`)

    def make_zeta(self, dim: int) -> NoiseSource:
        return WhiteNoise(dim, generator=self.generator, device=self.device, compile=self.source.compile)

    def summarise(self, record: torch.Tensor) -> Dict[str, float]:
        """Statistics of a full window of recorded ζ (steps × coordinates)."""
        return {"noise/lag1_autocorrelation": float(autocorrelation(record, 1, dim=0)[1].mean())}

    def estimate_target_power(self) -> None:
        """The population's batch-noise power E|g_B − ∇L|² at the current weights, and its standard error.

        Called right after the step's full gradient. Estimated from `match_samples` / B random
        minibatches drawn as the population's sampler draws them (B distinct indices for `epoch`,
        B i.i.d. indices for `replacement`), so the mean of their |g_B − ∇L|² is unbiased for that
        sampler's power without a correction factor; one vmap over batches, memory O(batches · d).
        Exact, from all N per-sample gradients (factor · tr(C)/B, standard error 0), when
        `match_samples` is 0 or ≥ N."""
        source, b, n, k = self.source, self.batch_size, self.source.n_train, self.cfg.match_samples
        has_buffers = any(True for _ in source.model.buffers())
        # ∇L as the step has it, unless BatchNorm makes train-mode and eval-mode gradients differ
        full = source.full_grad_vector(eval_mode=True) if has_buffers else source.flat_grad()
        if k == 0 or k >= n:
            trace = float(source.noise_trace(float(full.double().square().sum())))
            self.target_power, self.target_power_se = self.power_factor * max(0.0, trace) / b, 0.0
            return
        count = max(2, k // b)
        if self.population == "epoch":
            batches = random_batches(n, b, count, self.match_generator, self.device)
        else:
            batches = torch.randint(n, (count, b), generator=self.match_generator).to(self.device)
        sq = source.batch_grad_sq_norms(batches, center=full)
        self.target_power, self.target_power_se = float(sq.mean()), float(sq.std()) / math.sqrt(count)

    def matched_sigma(self) -> float:
        """σ with σ² · d · Var(ζ_i) = the target power (`estimate_target_power`, which it runs)."""
        self.estimate_target_power()
        return math.sqrt(self.target_power / (self.source.dim * self.zeta_variance))

    def injected_power(self) -> float:
        """E|σζ|² per step."""
        return self.sigma ** 2 * self.source.dim * self.zeta_variance

    def step_noise(self) -> Optional[StepNoise]:
        """σ²γ_ζ per coordinate, isotropic, with ζ's own memory (`NoiseSource.memory`)."""
        if self._memory is None:
            self._memory = self.zeta.memory()  # fixed by the configuration (fGn's: ~10⁵ lags, computed once)
            if self._memory is None:
                return None
        if self.sigma is None:
            return None
        return StepNoise(self._memory / self._memory[0], isotropic=self.sigma ** 2 * float(self._memory[0]))

    def apply(self, step: int, measure: bool = False) -> torch.Tensor:
        loss = self.source.backward_full()
        if self.sigma is None or (step - 1) % self.match_every == 0:
            if self.matched:
                self.sigma = self.matched_sigma()
            else:
                self.estimate_target_power()  # logged beside the injected power
        zeta = self.zeta.sample()
        self.source.add_to_grad(zeta, alpha=self.sigma)
        self._record(zeta)
        if measure:
            self.noise_norm = self.sigma * zeta.norm()
        return loss

    def _record(self, zeta: torch.Tensor) -> None:
        self.record[self.recorded % len(self.record)] = zeta[: self.record.shape[1]]
        self.recorded += 1
        if self.recorded % len(self.record) == 0:
            self.stats = self.summarise(self.record)

    def metrics(self) -> Dict[str, float]:
        return {"noise/sigma": self.sigma, "noise/norm": float(self.noise_norm), "noise/power": self.injected_power(),
                "noise/target_power": self.target_power, "noise/target_power_se": self.target_power_se, **self.stats}

    def state_dict(self) -> Dict:
        return {"generator": self.generator.get_state(), "match_generator": self.match_generator.get_state(),
                "zeta": self.zeta.state_dict(), "sigma": self.sigma,
                "target_power": self.target_power, "target_power_se": self.target_power_se,
                "record": self.record.cpu(), "recorded": self.recorded, "stats": dict(self.stats)}

    def load_state_dict(self, state: Dict) -> None:
        self.generator.set_state(state["generator"])
        self.match_generator.set_state(state["match_generator"])
        self.zeta.load_state_dict(state["zeta"])
        self.sigma, self.recorded, self.stats = state["sigma"], state["recorded"], dict(state["stats"])
        self.target_power, self.target_power_se = state["target_power"], state["target_power_se"]
        self.record.copy_(state["record"])


@MODES.register("gd_white")
class WhiteNoiseGD(InjectedNoise):
    """ζ_t i.i.d. N(0, I)."""


@MODES.register("gd_anticorrelated")
class AntiCorrelatedGD(InjectedNoise):
    """ζ_t = w_t − w_{t−1}, w i.i.d. N(0, I): variance 2 per coordinate, lag-1 correlation −1/2."""

    zeta_variance = 2.0

    def make_zeta(self, dim: int) -> NoiseSource:
        return AntiCorrelatedNoise(dim, generator=self.generator, device=self.device, compile=self.source.compile)


@MODES.register("gd_fbm")
class FractionalGD(InjectedNoise):
    """ζ_t fractional Gaussian noise of Hurst exponent `noise.hurst`, unit variance per coordinate."""

    def make_zeta(self, dim: int) -> NoiseSource:
        return StreamingFGN(self.cfg.hurst, dim, generator=self.generator, device=self.device,
                            n_factors=self.cfg.n_factors)

    def summarise(self, record: torch.Tensor) -> Dict[str, float]:
        return {**super().summarise(record), "noise/hurst": float(hurst_exponent(record, dim=0).mean())}


@MODES.register("gd_levy")
class LevyGD(InjectedNoise):
    """ζ_t i.i.d. symmetric α-stable, unit scale. Matched σ treats ζ as the α = 2 member (variance 2)."""

    zeta_variance = 2.0

    def make_zeta(self, dim: int) -> NoiseSource:
        return StableNoise(self.cfg.alpha, dim, generator=self.generator, device=self.device,
                           compile=self.source.compile)

    def summarise(self, record: torch.Tensor) -> Dict[str, float]:
        return {"noise/alpha": float(tail_index(record, dim=0).mean())}


def population_factor(population: str, n: int, batch_size: int) -> float:
    """Cov(g_B) = factor · C/B: (N − B)/(N − 1) for B distinct samples of N (`epoch`), 1 for `replacement`."""
    if population not in ("epoch", "replacement"):
        raise ValueError(f"population={population!r}; expected epoch or replacement")
    return max(0.0, (n - batch_size) / (n - 1)) if population == "epoch" and n > 1 else 1.0


def sgd_covariance_weights(z: torch.Tensor, batch_size: int, population: str = "replacement") -> torch.Tensor:
    """w_i = √f (z_i − z̄)/√(BN) for z ~ N(0, I_N): then Σ_i w_i ∇ℓ_i = √f (BN)^{-1/2} Σ_i (∇ℓ_i − ∇L) z_i,
    a Gaussian vector with covariance exactly f · C(θ)/B (C: per-sample gradient covariance, divisor
    N; f = `population_factor`): the covariance of one batch of the population's sampler, which for
    B distinct samples is exactly (N − B)/(N − 1) · C/B."""
    f = population_factor(population, len(z), batch_size)
    return (z - z.mean()) * math.sqrt(f / (batch_size * len(z)))


def sgd_covariance_noise(source: GradientSource, batch_size: int,
                         generator: Optional[torch.Generator] = None, population: str = "replacement") -> torch.Tensor:
    """One draw of SGD-covariance noise ζ ~ N(0, f · C(θ)/B) at the model's current weights, exactly,
    as a flat vector (parameters in `source.params` order); f = 1 for with-replacement batches
    (`population="replacement"`, the default), (N − B)/(N − 1) for batches of distinct samples (`"epoch"`).

    C is never formed and no per-sample gradient is stored: ζ is the gradient of the re-weighted
    loss Σ_i w_i ℓ_i (`sgd_covariance_weights`), one forward and one backward pass over the
    training set, in the model's current mode. `.grad`, the mode and BatchNorm statistics are
    left as they were (`GradientSource.full_grad_vector`). z is drawn from `generator`."""
    device = source.data.x_train.device
    z = torch.randn(source.n_train, generator=generator, device=generator.device if generator else device)
    return source.full_grad_vector(weights=sgd_covariance_weights(z.to(device), batch_size, population))


@MODES.register("gd_sgdcov")
class SGDCovarianceGD(InjectedNoise):
    """∇L + σ ζ with ζ ~ N(0, f · C(θ)/B) exactly, C never formed; `matched` is σ = 1. f is the
    population's factor (`population_factor`): ζ has exactly the covariance of one batch of the
    sampler, (N − B)/(N − 1) · C/B for `epoch`, C/B for `replacement`.

    ζ = 1/√(BN) Σ_i (∇ℓ_i − ∇L) z_i with z_i ~ N(0, 1) has covariance exactly C/B. Since
    Σ_i (∇ℓ_i − ∇L) z_i = Σ_i (z_i − z̄) ∇ℓ_i, the whole signal is the gradient of the weighted
    loss Σ_i w_i ℓ_i with w_i = 1/N + σ (z_i − z̄)/√(BN) (`sgd_covariance_weights`): one forward
    and one backward pass over the training set, the cost of a GD step. On logged steps ∇L is taken apart to measure |σζ|.
    """

    def __init__(self, cfg, source, seed, device):
        super().__init__(cfg, source, seed, device)
        if self.matched:
            self.sigma = 1.0  # exactly SGD's covariance: no estimate needed

    def make_zeta(self, dim: int) -> NoiseSource:
        return WhiteNoise(self.source.n_train, generator=self.generator, device=self.device)  # the z_i

    def estimate_target_power_at(self, step: int) -> None:
        """The target is only logged here (σ = 1 matches exactly); it needs ∇L in `.grad`."""
        self.source.backward_full()
        self.estimate_target_power()

    def injected_power(self) -> float:
        """E|σζ|² = σ² f tr(C)/B: σ² times the (estimated) target power, which ζ's covariance matches exactly."""
        return self.sigma ** 2 * self.target_power

    def step_noise(self) -> Optional[StepNoise]:
        """σ² f C/B, a fresh draw each step (uncorrelated)."""
        if self.sigma is None:
            return None
        return StepNoise(np.ones(1), covariance_scale=self.sigma ** 2 * self.power_factor / self.batch_size)

    def apply(self, step: int, measure: bool = False) -> torch.Tensor:
        n = self.source.n_train
        if (step - 1) % self.match_every == 0:
            self.estimate_target_power_at(step)
        weights = sgd_covariance_weights(self.zeta.sample(), self.batch_size, self.population).mul_(self.sigma)
        if measure:
            self.source.backward_weighted(weights)
            noise = self.source.flat_grad()
            self.noise_norm = noise.norm()
            loss = self.source.backward_full()
            self.source.add_to_grad(noise)
            return loss
        return self.source.backward_weighted(weights + 1.0 / n)


def make_noise_mode(cfg: DictConfig, source: GradientSource, seed: int, device: torch.device) -> NoiseMode:
    return MODES.get(cfg.name)(cfg, source, seed, device)
