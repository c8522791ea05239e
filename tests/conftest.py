"""Shared test helpers: compose the real config, run the real task in a temporary directory."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
from omegaconf import DictConfig

from sgdexp.config import compose_config

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

CONF = Path(__file__).resolve().parents[1] / "conf"


def default_sigint() -> None:
    """preexec_fn for a run that a test stops with SIGINT: Ctrl-C's default action, as at a terminal. A
    shell's background job (`make test &`) inherits SIGINT ignored, and so would the run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def communicate_or_dump(proc: subprocess.Popen, timeout: float):
    """`proc.communicate`; a process still running after `timeout` fails the test with its signal masks
    (/proc: blocked, ignored, caught) and every thread's stack (PYTHONFAULTHANDLER dumps them on
    SIGABRT), and is not left running."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            masks = [line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                     if line.startswith(("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))]
        except OSError:
            masks = []
        proc.send_signal(signal.SIGABRT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        pytest.fail(f"still running {timeout} s after the signal; {masks}; stderr:\n{(err or '')[-6000:]}")


# Small, fast defaults for tests: CPU, no W&B, no progress bar.
FAST = ["device=cpu", "logger=none", "trainer.progress=false", "trainer.figures=false"]


def make_cfg(overrides: Optional[List[str]] = None, fast: bool = True) -> DictConfig:
    return compose_config((FAST if fast else []) + list(overrides or []))


def train_run(out_dir: Path, overrides: Optional[List[str]] = None) -> dict:
    """Run the train task in-process; return the parsed summary.json."""
    from sgdexp.tasks import run_task

    run_task(make_cfg(overrides), Path(out_dir))
    return json.loads((Path(out_dir) / "summary.json").read_text())


def kill_after_checkpoint(out_dir: Path, overrides: List[str], monkeypatch, last_checkpoint: int) -> None:
    """Run training in `out_dir` and kill it (KeyboardInterrupt) at the first checkpoint after
    step `last_checkpoint`, as a preempted job dies: rows after that checkpoint are logged, the
    checkpoint is not updated."""
    from sgdexp.tasks import train as train_module

    real = train_module.Training.checkpoint

    def dying(self, step):
        if step > last_checkpoint:
            raise KeyboardInterrupt("killed")
        real(self, step)

    with monkeypatch.context() as patch:
        patch.setattr(train_module.Training, "checkpoint", dying)
        with pytest.raises(KeyboardInterrupt):
            train_run(out_dir, overrides)


def cli(args: List[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sgdexp <args>` in a subprocess, as a user runs it."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "sgdexp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def preset_sweep(overrides: List[str]):
    """(hydra.mode, the sweep's params as strings) of a preset composed with `overrides`."""
    from hydra import compose, initialize_config_dir

    from sgdexp.config import presets_as_choices, register_configs

    register_configs()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=presets_as_choices(overrides), return_hydra_config=True)
    return cfg.hydra.mode, {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}


def references(html: str):
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def assert_self_contained(report: Path) -> str:
    """Every image is embedded; every other reference is a relative path to a file that exists."""
    html = report.read_text()
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for ref in references(html):
        if ref.startswith("data:image/png;base64,"):
            continue
        assert not re.match(r"^[a-z]+://", ref) and not ref.startswith("/"), ref
        assert (report.parent / ref).exists(), ref
    return html


def preset_report(sweep_dir: Path, *sections: str) -> str:
    """Build the report of a finished preset sweep; check that it is self-contained and has `sections`."""
    from sgdexp.report import build_report

    report = build_report(sweep_dir)
    html = assert_self_contained(report)
    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", html)
    for section in sections:
        assert section in headings, (section, headings)
    return html
