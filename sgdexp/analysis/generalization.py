"""`analysis=[generalization]`: what a sweep relates noise and hyperparameters to.

Every `every` steps (and at step 0 and the end): train and test loss (and accuracy for
classification) and their gaps (test − train loss, train − test accuracy), the distance from
initialisation ‖θ_t − θ_0‖ and the weight norm ‖θ_t‖. Sharpness of the training loss (top Hessian
eigenvalue by Lanczos, trace by Hutchinson, through `sgdexp.curvature`) at the end, and every
`sharpness_every` steps (its multiples from `start` on) when that is > 0: the analysis is due on
those steps too, and where `every` is not, it measures the sharpness alone there. The last value of
each key lands in summary.json, so a sweep's table has them per run.

With `analysis=[curvature]` in the same run, the sharpness at a step where curvature measured the
full training loss's Hessian (always the end) is curvature's top eigenvalue and trace: one
measurement instead of two (the same Hessian, at curvature's `tol` and `probes`). The train and test
metrics come from `GradientSource.evaluate`, which the run's own evaluation at the same step has
already computed.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from sgdexp.analysis.base import Analysis, Measurement
from sgdexp.analysis.curvature import Curvature
from sgdexp.curvature import sharpness


class Generalization(Analysis):
    records_weights = True
    second_order = True
    order = 1  # after curvature, whose measurement at the same step it reads

    def __init__(self, cfg, source, noise_cfg, seed, steps):
        super().__init__(cfg, source, noise_cfg, seed, steps)
        self.initial: Optional[torch.Tensor] = None
        self.curvature: Optional[Curvature] = None  # the run's curvature analysis, if any (`connect`)
        self.sharpness_every = int(cfg.sharpness_every)  # a plain int: `due` runs every training step

    def connect(self, analyses: Dict[str, Analysis], noise=None) -> None:
        curvature = analyses.get("curvature")
        self.curvature = curvature if isinstance(curvature, Curvature) else None

    def _theta(self) -> torch.Tensor:
        return self.source.flat_params().double()

    def sharpness_due(self, step: int) -> bool:
        """A sharpness measurement at `step`, from `start` on: the end of the run, and the multiples of
        `sharpness_every` (none when it is 0)."""
        every = self.sharpness_every
        return step >= self.start and (step == self.steps or (every > 0 and step % every == 0))

    def due(self, step: int) -> bool:
        return super().due(step) or self.sharpness_due(step)

    def recording(self, step: int) -> bool:
        return step == 0

    def record(self, step: int) -> None:
        self.initial = self._theta()

    def compute(self, step: int) -> Optional[Measurement]:
        s: Dict[str, float] = self._metrics() if super().due(step) else {}
        if self.sharpness_due(step):
            sharp = self.curvature.sharpness_at(step) if self.curvature is not None else None
            if sharp is None:
                sharp = sharpness(self.source, k=1, probes=self.cfg.probes, tol=self.cfg.tol, generator=self.generator)
            s.update({"generalization/top_eigenvalue": sharp["top_eigenvalue"],
                      "generalization/trace": sharp["trace"], "generalization/trace_se": sharp["trace_se"]})
        self.last.update(s)
        return Measurement(s)

    def _metrics(self) -> Dict[str, float]:
        """Train and test loss and accuracy, their gaps, the distance from init and the weight norm."""
        src = self.source
        train, test = src.evaluate("train"), src.evaluate("test")
        theta = self._theta()
        s: Dict[str, float] = {"generalization/train_loss": train["train/loss"],
                               "generalization/test_loss": test["test/loss"],
                               "generalization/loss_gap": test["test/loss"] - train["train/loss"],
                               "generalization/weight_norm": float(theta.norm())}
        if "train/accuracy" in train:
            s.update({"generalization/train_accuracy": train["train/accuracy"],
                      "generalization/test_accuracy": test["test/accuracy"],
                      "generalization/accuracy_gap": train["train/accuracy"] - test["test/accuracy"]})
        if self.initial is not None:
            s["generalization/distance_from_init"] = float((theta - self.initial.to(theta.device)).norm())
        return s

    def state_dict(self) -> Dict:
        state = super().state_dict()
        if self.initial is not None:
            state["initial"] = self.initial.cpu()
        return state

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        if "initial" in state:
            self.initial = state["initial"].to(self.source.params[0].device)
