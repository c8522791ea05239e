"""Slow fault tests (`pytest -m slow tests/test_fault_injection.py`): scripts/fault_injection.py's
kills, W&B and disk faults, 8 joblib jobs and bad inputs; a submitit_local sweep preempted mid-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgdexp.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_fault_injection_script_figures_are_all_kept():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fault_injection.py"), "--kills", "20"],
                          capture_output=True, text=True, timeout=7200,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "kills tried / identical resumes / corrupt checkpoints: 20 / 20 / 0" in proc.stdout


def _submitit_tasks(sweep: Path):
    """pids of submitit's job processes working for `sweep`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if proc.name.isdigit() and "submitit.core._submit" in cmd and str(sweep) in cmd:
            pids.append(int(proc.name))
    return pids


def test_submitit_local_sweep_preempted_job_requeues_and_resumes_identically(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    common = ["device=cpu", "logger=none", "trainer.progress=false", "trainer.steps=400", "trainer.log_every=10",
              "trainer.eval_every=50", "trainer.checkpoint_every=50", "hydra/launcher=submitit_local"]
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "sgdexp", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}", *common],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 900
    while not (sweep / "0" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    pids = []
    while not pids and time.time() < deadline:
        pids = _submitit_tasks(sweep)
    for pid in pids:  # preemption: submitit's signal, as SLURM sends it
        os.kill(pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-m", "sgdexp", "seed=0", f"hydra.run.dir={reference}", *common[:-1]],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    for job in ("0", "1"):
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "completed"
    assert read_metrics(sweep / "0" / "metrics.jsonl") == read_metrics(reference / "metrics.jsonl")
    log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*.err"))
    assert "Requeued" in log or "preempted" in log
