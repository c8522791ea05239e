"""What a new user hit (issue 11, item 7): start-up imports, `~` in paths, --help, the injected modes'
statistics in a default-length run, W&B runs that can be found."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import cli, make_cfg, train_run
from sgdexp import config, stats
from sgdexp.tracking import wandb_run


def test_config_names_the_same_estimators_as_stats():
    assert config.HURST_METHODS == stats.HURST_METHODS and config.TAIL_METHODS == stats.TAIL_METHODS


def test_composing_and_validating_imports_neither_torch_nor_scipy(tmp_path):
    """A wrong value is answered before torch (1-2 s of imports) is loaded: the CLI validates first."""
    code = ("import sys, sgdexp.__main__; from sgdexp.config import compose_config, validate; "
            "validate(compose_config(['optimizer.lr=0.1'])); "
            "print(sorted(m for m in ('torch', 'scipy', 'timm', 'wandb', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_home_in_an_override_is_accepted_and_expanded(tmp_cwd):
    proc = cli(["dataset=cifar10", "dataset.root=~/sgdexp-no-such-dir", "logger=none", "device=cpu"], cwd=tmp_cwd)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("sgdexp: error: dataset.root=") and str(Path.home() / "sgdexp-no-such-dir") in lines[0]


def test_help_hides_the_schema_groups(tmp_cwd):
    proc = cli(["--help"], cwd=tmp_cwd)
    assert proc.returncode == 0
    assert "model: " in proc.stdout and "noise: " in proc.stdout and "timm" in proc.stdout
    assert "schema" not in proc.stdout


def test_injected_mode_statistics_appear_in_a_default_length_run(tmp_path):
    cfg = make_cfg(["noise=gd_fbm"])
    assert cfg.noise.record_steps <= cfg.trainer.steps // 2  # the default run sees several windows
    summary = train_run(tmp_path, ["noise=gd_fbm", "noise.sigma=0.01", "model.widths=[16]",
                                   f"trainer.steps={cfg.noise.record_steps}", "trainer.eval_every=0"])
    assert 0.5 < summary["noise/hurst"] < 0.9  # H = 0.7 injected; 16 coordinates × 256 steps


def test_wandb_run_is_named_grouped_typed_and_tagged(tmp_path, monkeypatch):
    import wandb

    hydra_dir = tmp_path / ".hydra"
    hydra_dir.mkdir()
    (hydra_dir / "overrides.yaml").write_text("- optimizer.lr=0.1\n- seed=2\n- hydra.launcher.n_jobs=2\n")
    seen = {}
    monkeypatch.setattr(wandb, "init", lambda **kwargs: seen.update(kwargs) or None)
    cfg = make_cfg(["logger=wandb", "noise=gd_fbm", "model=cnn", "logger.tags=[mine]"], fast=False)
    from omegaconf import OmegaConf

    wandb_run.WandbRun(cfg.logger, OmegaConf.to_container(cfg, resolve=True), tmp_path, "sweep-17", resume=False)
    assert seen["group"] == "sweep-17" and seen["job_type"] == "train"
    assert seen["name"] == "optimizer.lr=0.1 seed=2"
    assert seen["tags"] == ["mine", "noise:gd_fbm", "model:cnn", "dataset:digits"]
    assert wandb_run.run_identity({}, tmp_path / "nowhere")["name"] == "default"
