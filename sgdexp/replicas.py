"""R independent replicas of one training problem as one batched computation.

Parameters are stacked, (R, *shape) per tensor, and go through `torch.func.functional_call` under
`vmap`; `torch.optim` steps the stacked tensors (its updates are elementwise, so momentum, weight
decay and Adam stay per replica). Every random draw is counter-based: SplitMix64 words keyed by
(replica key, counter), the replica key derived from (seed, stream, global replica index) (the
keyed streams of `sgdexp.noise.generators`: `stream_keys`, `keyed_words`, `counter_seeds`). Replica
r's minibatches and noise therefore do not depend on how many replicas run beside it or how they
are chunked, and a resumed run recomputes the same draws from the step number alone.

Why our own draws: torch.Generator is one stream per object; R generators stepped in a Python loop
cost R calls per step, which is the loop this module exists to avoid.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from sgdexp.models.landscapes import Landscape
from sgdexp.noise.generators import (
    counter_seeds, fit_streaming_fgn, keyed_integers, keyed_words, stream_keys, symmetric_alpha_stable,
)
from sgdexp.seeding import derive_seed

Params = Dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- keyed draws
def replica_keys(seed: int, stream: str, replicas: torch.Tensor) -> torch.Tensor:
    """One 64-bit key per global replica index (int64 tensor) for the named stream."""
    return stream_keys(derive_seed(seed, stream), replicas)


class ReplicaStreams:
    """Per-replica draws of `n` numbers per counter (step), made `block` counters at a time.

    Replica r's block b is `draw(generator, (block, n))` from a torch.Generator seeded with
    mix(key_r + b·γ'): so the numbers depend only on (seed, stream, r, counter), never on R, the
    chunking or where a run resumed. `block` depends on n alone (about 4096 numbers per replica
    and block). Why not keyed words for everything: eager SplitMix64 plus Box–Muller costs ~30
    elementwise int64 kernels per number pair (100-300 ns a number here), torch.randn ~3 ns; one
    generator call per replica and block amortises the Python loop over replicas across `block`
    steps (409 steps for d = 10; every step when n ≥ 4096, where each replica's own model
    evaluation costs far more than the call)."""

    BLOCK_NUMBERS = 4096

    def __init__(self, keys: torch.Tensor, n: int, draw=None):
        self.keys, self.n = keys.cpu(), n
        self.draw = draw or (lambda gen, shape: torch.randn(shape, generator=gen))
        self.block = max(1, self.BLOCK_NUMBERS // max(1, n))
        self.device = keys.device
        self._index, self._cache = -1, None
        self._generator = torch.Generator()

    def __call__(self, counter: int) -> torch.Tensor:
        index, row = divmod(counter, self.block)
        if index != self._index:
            blocks = []
            for seed in counter_seeds(self.keys, index):  # one generator call per replica and block (see the class docstring)
                self._generator.manual_seed(seed)
                blocks.append(self.draw(self._generator, (self.block, self.n)))
            self._cache = torch.stack(blocks, dim=1).to(self.device)  # (block, R, n)
            self._index = index
        return self._cache[row]


# ----------------------------------------------------------------------------- samplers
class ReplicaSampler:
    """Each replica's minibatches (R, B), with the semantics of `sgdexp.data.samplers`: `epoch` (a
    fresh permutation per epoch, by argsort of keyed words; drop-last) or `replacement` (i.i.d.).
    Stateless: the batch of step t (1-based) is a function of the keys and t."""

    def __init__(self, name: str, n: int, batch_size: int, keys: torch.Tensor):
        self.name, self.n, self.batch_size, self.keys = name, n, batch_size, keys
        self.batches_per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> torch.Tensor:
        if self.name == "replacement":
            return keyed_integers(self.keys, step, self.batch_size, self.n)
        epoch, position = divmod(step - 1, self.batches_per_epoch)
        if epoch != self._epoch:
            self._perm = keyed_words(self.keys, epoch, self.n).argsort(dim=1)
            self._epoch = epoch
        return self._perm[:, position * self.batch_size : (position + 1) * self.batch_size]


# ----------------------------------------------------------------------------- objectives
class StackedObjective:
    """The training loss on stacked parameters: full, minibatch (per replica) and weighted."""

    shapes: Dict[str, torch.Size]

    @property
    def numels(self):
        return [math.prod(s) for s in self.shapes.values()]

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def split(self, flat: torch.Tensor) -> Params:
        """(R, d) → per-tensor (R, *shape)."""
        return {k: part.view(len(flat), *s) for (k, s), part in zip(self.shapes.items(), flat.split(self.numels, dim=1))}

    def loss(self, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def full_grads(self, params: Params) -> Tuple[torch.Tensor, Params]:
        raise NotImplementedError

    def batch_grads(self, params: Params, batches: torch.Tensor) -> Tuple[torch.Tensor, Params]:
        raise NotImplementedError

    def weighted_grads(self, params: Params, weights: torch.Tensor) -> Tuple[torch.Tensor, Params]:
        raise NotImplementedError


class NetworkObjective(StackedObjective):
    """A model on a dataset. Buffers (BatchNorm statistics) stay at θ*'s and the model is run in
    eval mode: under vmap running statistics cannot update, and batch statistics would mix samples."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, per_sample_loss, chunk_size: int):
        self.model, self.x, self.y, self.chunk_size = model.eval(), x, y, chunk_size
        self.loss_fn, self.per_sample_loss = loss_fn, per_sample_loss
        self.buffers = {k: b.detach() for k, b in model.named_buffers()}
        self.shapes = {k: p.shape for k, p in model.named_parameters() if p.requires_grad}
        n = len(x)

        def chunk_loss(params, x, y):
            return loss_fn(functional_call(model, (params, self.buffers), (x,)), y) * (len(x) / n)

        def weighted_loss(params, x, y, w):
            return (per_sample_loss(functional_call(model, (params, self.buffers), (x,)), y) * w).sum()

        self._full = vmap(grad_and_value(chunk_loss), in_dims=(0, None, None))
        self._loss = vmap(chunk_loss, in_dims=(0, None, None))
        self._batch = vmap(grad_and_value(lambda p, x, y: chunk_loss(p, x, y) * (n / len(x))), in_dims=(0, 0, 0))
        self._weighted = vmap(grad_and_value(weighted_loss), in_dims=(0, None, None, 0))
        self._values = vmap(lambda p, x, y: per_sample_loss(functional_call(model, (p, self.buffers), (x,)), y),
                            in_dims=(0, None, None))

    def _chunks(self):
        for start in range(0, len(self.x), self.chunk_size):
            yield start, self.x[start : start + self.chunk_size], self.y[start : start + self.chunk_size]

    @torch.no_grad()
    def loss(self, params):
        return sum(self._loss(params, x, y) for _, x, y in self._chunks())

    def full_grads(self, params):
        total, grads = None, None
        for _, x, y in self._chunks():
            g, value = self._full(params, x, y)
            total = value if total is None else total + value
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
        return total, grads

    def batch_grads(self, params, batches):
        g, value = self._batch(params, self.x[batches], self.y[batches])
        return value, g

    def weighted_grads(self, params, weights):
        """∇ Σ_i w_ri ℓ_i(θ_r) per replica, and L(θ_r)."""
        total, grads = 0.0, None
        for start, x, y in self._chunks():
            g, _ = self._weighted(params, x, y, weights[:, start : start + len(x)])
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
            with torch.no_grad():
                total = total + self._values(params, x, y).sum(dim=1) / len(self.x)
        return total, grads


class LandscapeObjective(StackedObjective):
    """An analytic landscape: one parameter tensor `theta` (R, d); no samples."""

    def __init__(self, landscape: Landscape):
        self.landscape = landscape
        self.shapes = {"theta": torch.Size([landscape.dim])}

    @torch.no_grad()
    def loss(self, params):
        return self.landscape.loss(params["theta"])

    @torch.no_grad()
    def full_grads(self, params):
        theta = params["theta"]
        return self.landscape.loss(theta), {"theta": self.landscape.grad(theta)}


# ----------------------------------------------------------------------------- noise modes
INJECTED = ("gd_white", "gd_fbm", "gd_levy", "gd_anticorrelated", "gd_sgdcov")


class ReplicaNoise:
    """The gradient signal of `noise.name` for every replica at once: `signal(params, step)` →
    (loss (R,), gradient per tensor). Same update rules as `sgdexp.noise.modes`; σ is fixed (a
    number, or matched once at θ* by the caller). State: the fGn factors only."""

    def __init__(self, cfg: DictConfig, objective: StackedObjective, sigma: Optional[float], seed: int,
                 replicas: torch.Tensor, n_train: int = 0):
        self.name, self.objective, self.sigma = cfg.name, objective, sigma
        self.batch_size, self.n_train = int(cfg.batch_size), n_train
        self.keys = replica_keys(seed, "escape/noise", replicas)
        self.sampler = (ReplicaSampler(cfg.sampler, n_train, self.batch_size, replica_keys(seed, "escape/sampler", replicas))
                        if self.name == "sgd" else None)
        self.alpha = float(cfg.get("alpha", 2.0))
        d = objective.dim
        if self.name == "gd_levy":
            self.draws = ReplicaStreams(self.keys, d, lambda gen, shape: symmetric_alpha_stable(self.alpha, shape, generator=gen))
        else:
            self.draws = ReplicaStreams(self.keys, self.n_train if self.name == "gd_sgdcov" else d)
        self.factors = None
        if self.name == "gd_fbm":
            fit = fit_streaming_fgn(float(cfg.hurst), int(cfg.n_factors))
            self.fit = fit
            device = replicas.device
            self.beta = float(fit.beta)
            self.kappa = torch.tensor(fit.kappa, dtype=torch.float32, device=device).view(-1, 1, 1)
            self.rho = torch.tensor(fit.rho, dtype=torch.float32, device=device).view(-1, 1, 1)
            k, d = fit.n_factors, objective.dim
            if k:  # stationary start, as StreamingFGN: s ~ N(0, S) per coordinate, from its own stream
                root = torch.as_tensor(fit.stationary_root(), dtype=torch.float32, device=device)
                z = ReplicaStreams(replica_keys(seed, "escape/fbm_start", replicas), k * d)(0).view(len(replicas), k, d)
                self.factors = torch.einsum("ij,rjd->ird", root, z)  # (K, R, d)

    def _zeta(self, step: int) -> torch.Tensor:
        if self.name in ("gd_white", "gd_levy"):
            return self.draws(step)
        if self.name == "gd_anticorrelated":  # w_t − w_{t−1}, both from their counters (no state)
            previous = self.draws(step - 1)
            return self.draws(step) - previous
        # gd_fbm: innovations at counters ≥ 1 (counter 0 started the factors)
        eps = self.draws(step).clone()
        if self.factors is None:
            return eps.mul_(self.beta)
        out = eps * self.beta + (self.kappa * self.factors).sum(dim=0)
        self.factors.mul_(self.rho).add_(eps)
        return out

    def signal(self, params: Params, step: int) -> Tuple[torch.Tensor, Params]:
        obj = self.objective
        if self.name == "sgd":
            return obj.batch_grads(params, self.sampler.batch(step))
        if self.name == "gd_sgdcov":  # w_i = 1/N + σ (z_i − z̄)/√(BN): ∇L plus N(0, C/B) noise, per replica
            z = self.draws(step)
            weights = (z - z.mean(dim=1, keepdim=True)).mul_(self.sigma / math.sqrt(self.batch_size * self.n_train))
            return obj.weighted_grads(params, weights.add_(1.0 / self.n_train))
        loss, grads = obj.full_grads(params)
        if self.name == "gd":
            return loss, grads
        noise = obj.split(self._zeta(step))
        return loss, {k: g.add(noise[k], alpha=self.sigma) for k, g in grads.items()}

    def state_dict(self) -> Dict:
        return {} if self.factors is None else {"factors": self.factors.cpu()}

    def load_state_dict(self, state: Dict) -> None:
        if self.factors is not None:
            self.factors.copy_(state["factors"])
