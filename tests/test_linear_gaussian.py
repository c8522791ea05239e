"""`dataset=linear_gaussian`: inputs with a chosen covariance, so the linear model's Hessian is chosen."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_cfg
from sgdexp.data.datasets import input_eigenvalues
from sgdexp.errors import ConfigError
from sgdexp.tasks.setup import build_setup


def hessian(source) -> np.ndarray:
    """The exact Hessian of the full training loss by autograd (dim is tiny here)."""
    from torch.func import functional_call, hessian as func_hessian

    names = list(source.named_params)
    flat = torch.cat([p.detach().reshape(-1) for p in source.params]).double()
    model = source.model.double()

    def loss(v):
        parts = dict(zip(names, [c.view_as(p) for c, p in zip(v.split(source.numels), source.params)]))
        out = functional_call(model, parts, (source.data.x_train.double(),))
        return torch.nn.functional.mse_loss(out, source.data.y_train.double())

    return func_hessian(loss)(flat).numpy()


@pytest.mark.parametrize("extra", [["dataset.condition_number=50"],
                                   ["dataset.input_spectrum=explicit", "dataset.dim=4",
                                    "dataset.eigenvalues=[4.0,1.0,0.25,0.0625]"]])
def test_hessian_spectrum_is_the_configured_one(extra):
    n = 8192
    cfg = make_cfg(["dataset=linear_gaussian", "model=linear", f"dataset.n_train={n}", *extra])
    lam = input_eigenvalues(cfg.dataset)
    h = hessian(build_setup(cfg).source)
    d = len(lam)
    w_block = np.linalg.eigvalsh(h[:d, :d])[::-1]  # weights block: 2 × the empirical input second moment
    # Sample eigenvalues of a Wishart matrix with well separated eigenvalues: relative s.e. √(2/n)
    # (1.6% at n = 8192), plus level repulsion of order λ_j λ_k/(n(λ_j − λ_k)); allow 5 s.e.
    assert np.allclose(w_block, 2 * lam, rtol=5 * np.sqrt(2 / n))
    assert h[-1, -1] == pytest.approx(2.0)  # the bias direction
    if cfg.dataset.input_spectrum == "power_law":
        assert lam[0] / lam[-1] == pytest.approx(50)
        assert np.allclose(np.diff(np.log(lam)) / np.diff(np.log(np.arange(1, d + 1))), -np.log(50) / np.log(d))


def test_explicit_spectrum_needs_dim_values():
    with pytest.raises(ConfigError, match="dataset.eigenvalues"):
        build_setup(make_cfg(["dataset=linear_gaussian", "model=linear", "dataset.input_spectrum=explicit",
                              "dataset.eigenvalues=[1.0,2.0]"]))
