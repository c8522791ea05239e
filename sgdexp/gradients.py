"""The one gradient source: minibatch, full-batch, weighted, per-sample and evaluation passes.

Noise modes and analyses ask it for gradients; nobody else runs the model on training data.

Per-sample gradients use `torch.func` (vmap over grad of a functional_call), chunked so that a chunk
of per-sample gradients holds at most `PER_SAMPLE_BUDGET` numbers. They are taken in eval mode:
BatchNorm then normalises with its running statistics, so each sample's gradient depends on that
sample alone (in train mode a "per-sample" gradient through batch statistics is not one).
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from sgdexp.data import Dataset

PER_SAMPLE_BUDGET = 1 << 23  # numbers per chunk of per-sample gradients (32 MB in float32: stays in cache-warm memory)


class GradientSource:
    def __init__(self, model: nn.Module, data: Dataset, chunk_size: int):
        self.model, self.data, self.chunk_size = model, data, chunk_size
        self.classification = data.task == "classification"
        self.loss_fn = F.cross_entropy if self.classification else F.mse_loss
        self.named_params = {k: p for k, p in model.named_parameters() if p.requires_grad}
        self.params = list(self.named_params.values())
        self.numels = [p.numel() for p in self.params]
        self.dim = sum(self.numels)

    @property
    def n_train(self) -> int:
        return self.data.n_train

    def _chunks(self, split: str = "train") -> Iterator[tuple]:
        """(start, x, y) over `split` in chunks of `chunk_size`: full-batch work in bounded memory."""
        x_all, y_all = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        for start in range(0, len(x_all), self.chunk_size):
            yield start, x_all[start : start + self.chunk_size], y_all[start : start + self.chunk_size]

    def _zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def backward_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Write the minibatch gradient g_B into `.grad`; return the batch loss (detached)."""
        loss = self.loss_fn(self.model(self.data.x_train[indices]), self.data.y_train[indices])
        self._zero_grad()
        loss.backward()
        return loss.detach()

    def backward_full(self) -> torch.Tensor:
        """Write the full-batch gradient ∇L into `.grad`, in chunks of `chunk_size`; return L."""
        self._zero_grad()
        n, total = self.n_train, torch.zeros((), device=self.data.x_train.device)
        for _, x, y in self._chunks():
            loss = self.loss_fn(self.model(x), y) * (len(x) / n)
            loss.backward()
            total += loss.detach()
        return total

    def per_sample_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(out, y, reduction="none")
        return F.mse_loss(out, y, reduction="none").flatten(1).mean(dim=1)

    def backward_weighted(self, weights: torch.Tensor) -> torch.Tensor:
        """Write ∇ Σ_i w_i ℓ_i(θ) over the training set into `.grad` (chunked); return L(θ).

        One forward and one backward pass: the gradient of any fixed linear combination of
        per-sample losses, e.g. ∇L plus exact SGD-covariance noise (see `noise.modes`).
        """
        self._zero_grad()
        n, total = self.n_train, torch.zeros((), device=weights.device)
        for start, x, y in self._chunks():
            losses = self.per_sample_loss(self.model(x), y)
            (losses * weights[start : start + len(x)]).sum().backward()
            total += losses.detach().sum() / n
        return total

    def full_grad_vector(self, eval_mode: bool = False) -> torch.Tensor:
        """∇L(θ) as a flat vector, leaving `.grad`, the model's mode and its buffers as they were.

        For analyses: training is not perturbed (BatchNorm running statistics are restored).
        `eval_mode=True` takes it in eval mode, consistent with `batch_grad_blocks`."""
        saved = {k: b.clone() for k, b in self.model.named_buffers()}
        was_training = self.model.training
        self.model.train(not eval_mode and was_training)
        total = torch.zeros(self.dim, device=self.data.x_train.device)
        try:
            for _, x, y in self._chunks():
                loss = self.loss_fn(self.model(x), y) * (len(x) / self.n_train)
                total += torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params)])
        finally:
            self.model.train(was_training)
            with torch.no_grad():
                for k, b in self.model.named_buffers():
                    b.copy_(saved[k])
        return total

    # ------------------------------------------------------------------ flat gradient vectors
    def flat_grad(self) -> torch.Tensor:
        """The current `.grad` of every parameter as one vector of length `dim`."""
        return torch.cat([p.grad.reshape(-1) for p in self.params])

    def add_to_grad(self, vector: torch.Tensor, alpha: float = 1.0) -> None:
        """`.grad += alpha * vector`, the flat vector split over the parameters."""
        for p, part in zip(self.params, vector.split(self.numels)):
            p.grad.add_(part.view_as(p), alpha=alpha)

    # ------------------------------------------------------------------ per-sample gradients
    def batch_grad_blocks(self, batches: torch.Tensor, rows_per_chunk: Optional[int] = None
                          ) -> Iterator[Dict[str, torch.Tensor]]:
        """Gradients of the mean loss of each row of `batches` (R, B) of sample indices, in order,
        as {parameter name: (rows, *shape)} blocks, in eval mode (see the module docstring).

        One vmap over rows of grad of a functional_call: B = 1 gives per-sample gradients, B > 1
        minibatch gradients without materialising the per-sample ones."""
        b = batches.shape[1]
        rows_per_chunk = rows_per_chunk or max(1, min(max(1, self.chunk_size // b), PER_SAMPLE_BUDGET // self.dim))
        params = {k: p.detach() for k, p in self.named_params.items()}
        buffers = dict(self.model.named_buffers())

        def batch_loss(params, x, y):
            return self.loss_fn(functional_call(self.model, (params, buffers), (x,)), y)

        per_row = vmap(grad(batch_loss), in_dims=(None, 0, 0))
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(batches), rows_per_chunk):
                rows = batches[start : start + rows_per_chunk]
                yield per_row(params, self.data.x_train[rows], self.data.y_train[rows])
        finally:
            self.model.train(was_training)

    def _flat(self, block: Dict[str, torch.Tensor]) -> torch.Tensor:
        rows = len(next(iter(block.values())))
        return torch.cat([block[k].reshape(rows, -1) for k in self.named_params], dim=1)

    def _all_samples(self, indices: Optional[torch.Tensor]) -> torch.Tensor:
        if indices is None:
            indices = torch.arange(self.n_train, device=self.data.x_train.device)
        return indices.reshape(-1, 1)

    def per_sample_grads(self, indices: Optional[torch.Tensor] = None, chunk: Optional[int] = None
                         ) -> Iterator[torch.Tensor]:
        """Per-sample gradients of `indices` (default: all training samples) as flat (chunk, dim)
        blocks, parameters in `self.params` order, in eval mode."""
        for block in self.batch_grad_blocks(self._all_samples(indices), chunk):
            yield self._flat(block)

    def minibatch_grads(self, batches: torch.Tensor) -> Iterator[torch.Tensor]:
        """Minibatch gradients g_B of each row of `batches` (M, B) as flat (m, dim) blocks, in eval
        mode: memory O(m · dim), never O(M · B · dim)."""
        for block in self.batch_grad_blocks(batches):
            yield self._flat(block)

    def noise_trace(self, full_grad_sq_norm: Optional[float] = None, indices: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """tr C(θ) = 1/N Σ_i |∇ℓ_i|² − |∇L|², from per-sample gradients.

        `full_grad_sq_norm`: |∇L|² when the caller already has ∇L (a GD step does); otherwise the
        mean of the per-sample gradients is used (that needs all samples). `indices`: estimate the
        mean squared norm on these samples only (a uniform subset gives an unbiased estimate); by
        default all N, exactly. Per-chunk sums are float32, totals float64.
        """
        if full_grad_sq_norm is None and indices is not None:
            raise ValueError("noise_trace on a subset needs full_grad_sq_norm")
        device = self.data.x_train.device
        sq = torch.zeros((), dtype=torch.float64, device=device)
        total = None if full_grad_sq_norm is not None else {k: 0.0 for k in self.named_params}
        rows = self._all_samples(indices)
        for block in self.batch_grad_blocks(rows):
            for k, g in block.items():
                sq += torch.linalg.vector_norm(g.flatten(1), dim=1).double().square().sum()
                if total is not None:
                    total[k] = total[k] + g.sum(dim=0).double()
        if total is not None:
            full_grad_sq_norm = sum(float((t / len(rows)).square().sum()) for t in total.values())
        return sq / len(rows) - full_grad_sq_norm

    @torch.no_grad()
    def evaluate(self, split: str) -> Dict[str, float]:
        """Loss (and accuracy for classification) on `train` or `test`, in eval mode."""
        x_all, y_all = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct = torch.zeros((), dtype=torch.float64, device=x_all.device), 0
        for _, x, y in self._chunks(split):
            out = self.model(x)
            loss_sum += self.loss_fn(out, y, reduction="sum").double()
            if self.classification:
                correct += (out.argmax(dim=1) == y).sum()
        self.model.train(was_training)
        n = len(x_all)
        # mse_loss with reduction="sum" sums over output dimensions too: divide by targets per sample
        per = 1 if self.classification else y_all[0].numel()
        metrics = {f"{split}/loss": float(loss_sum) / (n * per)}
        if self.classification:
            metrics[f"{split}/accuracy"] = float(correct) / n
        return metrics
