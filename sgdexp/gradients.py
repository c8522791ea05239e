"""The one gradient source: minibatch, full-batch and evaluation passes over data held as tensors.

Noise modes and analyses ask it for gradients; nobody else runs the model on training data.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from sgdexp.data import Dataset


class GradientSource:
    def __init__(self, model: nn.Module, data: Dataset, chunk_size: int):
        self.model, self.data, self.chunk_size = model, data, chunk_size
        self.classification = data.task == "classification"
        self.loss_fn = F.cross_entropy if self.classification else F.mse_loss
        self.params = [p for p in model.parameters() if p.requires_grad]

    @property
    def n_train(self) -> int:
        return self.data.n_train

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
        for start in range(0, n, self.chunk_size):
            x, y = self.data.x_train[start : start + self.chunk_size], self.data.y_train[start : start + self.chunk_size]
            loss = self.loss_fn(self.model(x), y) * (len(x) / n)
            loss.backward()
            total += loss.detach()
        return total

    @torch.no_grad()
    def evaluate(self, split: str) -> Dict[str, float]:
        """Loss (and accuracy for classification) on `train` or `test`, in eval mode."""
        x_all, y_all = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct = torch.zeros((), dtype=torch.float64, device=x_all.device), 0
        for start in range(0, len(x_all), self.chunk_size):
            x, y = x_all[start : start + self.chunk_size], y_all[start : start + self.chunk_size]
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
