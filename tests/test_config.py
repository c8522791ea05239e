"""Every config group member composes and validates; bad values give one clear line."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import CONF, make_cfg
from sgdexp.config import validate
from sgdexp.errors import ConfigError

GROUPS = ["dataset", "model", "optimizer", "noise", "analysis", "task", "logger"]
MEMBERS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_members():
    assert {g for g, _ in MEMBERS} == set(GROUPS)


@pytest.mark.parametrize("group,member", MEMBERS)
def test_member_composes_and_validates(group, member):
    if group == "analysis":  # a list group: each member sits under analysis.<member>
        cfg = make_cfg([f"analysis=[{member}]"])
        node = cfg.analysis[member]
    else:
        cfg = make_cfg([f"{group}={member}"])
        node = cfg[group]
    validate(cfg)
    assert node.name == member  # the file name is the name the code's registry knows


def test_debug_preset_composes():
    cfg = make_cfg(["debug=default"], fast=False)
    validate(cfg)
    assert cfg.logger.name == "none" and cfg.device == "cpu" and cfg.trainer.steps == 20


@pytest.mark.parametrize("group,member", MEMBERS)
def test_member_is_registered(group, member):
    from sgdexp.analysis import ANALYSES
    from sgdexp.data import DATASETS
    from sgdexp.models import MODELS
    from sgdexp.noise.modes import MODES
    from sgdexp.optim import OPTIMIZERS
    from sgdexp.tasks import TASKS

    registries = {"dataset": DATASETS, "model": MODELS, "noise": MODES, "optimizer": OPTIMIZERS, "task": TASKS,
                  "analysis": ANALYSES}
    if group in registries:
        assert member in registries[group]


def test_documented_overrides_compose():
    cfg = make_cfg([
        "seed=3", "device=cpu", "trainer.steps=7", "trainer.eval_every=3", "trainer.checkpoint_every=2",
        "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.weight_decay=1e-4", "noise.batch_size=16",
        "noise.sampler=replacement", "dataset.root=/tmp/x", "dataset.download=true", "logger=wandb",
        "logger.mode=disabled", "logger.project=p",
    ])
    validate(cfg)
    assert (cfg.seed, cfg.trainer.steps, cfg.optimizer.momentum, cfg.noise.sampler) == (3, 7, 0.9, "replacement")
    assert cfg.logger.project == "p" and cfg.dataset.root == "/tmp/x"


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.momentum=1.0", "optimizer.momentum"),
    ("optimizer.momentum=-0.5", "optimizer.momentum"),
    ("noise.batch_size=0", "noise.batch_size"),
    ("noise.sampler=shuffle", "noise.sampler"),
    ("trainer.steps=0", "trainer.steps"),
    ("trainer.lr_schedule=linear", "trainer.lr_schedule"),
    ("model.widths=[64,0]", "model.widths[1]"),
    ("device=tpu", "device"),
    ("noise=gd_fbm noise.hurst=1.0", "noise.hurst"),
    ("noise=gd_fbm noise.hurst=0", "noise.hurst"),
    ("noise=gd_levy noise.alpha=2.5", "noise.alpha"),
    ("noise=gd_levy noise.alpha=0", "noise.alpha"),
    ("noise=gd_white noise.sigma=-1", "noise.sigma"),
    ("noise=gd_white noise.sigma=inf", "noise.sigma"),
    ("optimizer.lr=inf", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("seed=18446744073709551616", "seed"),
    ("dataset.split_seed=4294967296", "dataset.split_seed"),
    ("+optimizer.lrr=0.5", "optimizer.lrr"),
    ("+trainer.foo=1", "trainer.foo"),
    ("noise=gd_white noise.sigma=loud", "noise.sigma"),
    ("noise=gd_fbm noise.n_factors=64", "noise.n_factors"),
    ("analysis=[noise_stats] analysis.noise_stats.tail_method=kurtosis", "analysis.noise_stats.tail_method"),
    ("analysis=[curvature] analysis.curvature.exact_below=100000", "analysis.curvature.exact_below"),
    ("analysis=[curvature] analysis.curvature.tol=2", "analysis.curvature.tol"),
    ("analysis=[generalization] analysis.generalization.tol=1", "analysis.generalization.tol"),
    ("analysis=[noise_memory] analysis.noise_memory.hurst_methods=[whittle,wavelet]",
     "analysis.noise_memory.hurst_methods[1]"),
])
def test_bad_value_names_key_value_and_range(override, key):
    """`override`: space-separated overrides; the last one holds the bad value."""
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(override.split()))
    value = override.split()[-1].split("=", 1)[1]
    assert str(err.value).startswith(f"{key}=")
    assert value.strip("[]").split(",")[-1] in str(err.value)
    assert "allowed" in str(err.value)


def test_added_keys_must_exist_and_secrets_are_not_echoed():
    # `+key=value` adds a key Hydra's struct mode would refuse without the `+`: OmegaConf.to_object drops
    # it without a word, so a misspelt `+optimizer.lrr` ran at the default rate
    with pytest.raises(ConfigError, match=r"optimizer.lrr=0.5 is not allowed: did you mean optimizer.lr\?"):
        validate(make_cfg(["+optimizer.lrr=0.5"]))
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(["logger=wandb", "+logger.api_key=secret-abc123"]))
    assert "logger.api_key='<hidden>' is not allowed" in str(err.value) and "secret-abc123" not in str(err.value)


def test_wrong_type_fails_at_composition():
    with pytest.raises(Exception) as err:
        make_cfg(["trainer.steps=many"])
    assert "steps" in str(err.value)


def test_resolved_config_is_plain():
    container = OmegaConf.to_container(make_cfg(["dataset=mnist"]), resolve=True)
    assert isinstance(container["dataset"]["root"], str) and "${" not in container["dataset"]["root"]
