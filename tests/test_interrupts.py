"""Ctrl-C in a joblib sweep (sgdexp.interrupts): the running jobs end as interrupted runs, the
others do not start, and the sweep's last line says how far each got and how to continue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import FAST, communicate_or_dump, default_sigint


def sweep_past_first_checkpoints(tmp_path, sweep, args) -> subprocess.Popen:
    """`python -m sgdexp ARGS` (a sweep) in a session of its own (a terminal's Ctrl-C reaches its process group),
    once jobs 0 and 1 have each written a checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "sgdexp", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"})
    deadline = time.time() + 180
    checkpoints = [sweep / job / "checkpoints" / "last.pt" for job in ("0", "1")]
    while not all(c.exists() for c in checkpoints) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    return proc


@pytest.mark.parametrize("target,sig,code", [("group", signal.SIGINT, 130), ("parent", signal.SIGINT, 130),
                                              ("parent", signal.SIGTERM, 143)])
def test_ctrl_c_stops_a_joblib_sweep_with_each_jobs_summary_and_one_line(tmp_path, target, sig, code):
    # joblib killed its workers on the parent's KeyboardInterrupt (no summary.json, a 40-line traceback);
    # `kill -INT` of the parent alone left the jobs running, and SIGTERM left them orphaned. "group" is the
    # terminal's Ctrl-C.
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2", *FAST, "trainer.steps=1000000",
            "trainer.checkpoint_every=100", "trainer.log_every=50", f"hydra.sweep.dir={sweep}"]
    proc = sweep_past_first_checkpoints(tmp_path, sweep, args)
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = communicate_or_dump(proc, timeout=120)
    assert proc.returncode == code and "Traceback" not in out + err, err[-3000:]
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["checkpoint_step"] >= 100
        assert f"job {job} seed={job} " in err and f"interrupted at step {summary['step']} " \
               f"(checkpoint at step {summary['checkpoint_step']})" in err
    assert not (sweep / "2").exists()  # the third job never started, and left no directory
    last = err.strip().splitlines()[-1]
    assert last.startswith("sgdexp: the sweep was interrupted: job 0 ") and "job 2 seed=2" in last \
        and last.endswith(f"not started; the same command with trainer.resume=true hydra.sweep.dir={sweep} continues it")


def test_a_job_that_starts_after_the_sweep_was_stopped_does_not_start(tmp_path):
    # A worker still importing when Ctrl-C came has no handler yet and may lose the signal; the launcher's
    # stop file tells its jobs all the same. Here the file is there before any job starts (made once the
    # sweep has composed its jobs, a second or more before a worker has imported torch).
    from sgdexp.interrupts import stop_file

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "sgdexp", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                             "seed=0,1,2", *FAST, "trainer.steps=1000000", f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 120
    while not (sweep / "multirun.yaml").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    stop_file(proc.pid).touch()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]  # no job left a directory
    assert err.strip().splitlines()[-1].count(": not started") == 3
    assert not stop_file(proc.pid).exists()  # the launcher removes it at the end


def test_a_stale_stop_file_of_a_killed_sweep_does_not_stop_a_new_one():
    # a sweep killed (SIGKILL) after its first Ctrl-C leaves its stop file; a later sweep given the same pid
    # must not read it as its own
    from sgdexp.interrupts import IMPORTED_AT, stop_file, stop_workers_on_interrupt

    stop = stop_file(os.getpid())
    stop.touch()
    os.utime(stop, (IMPORTED_AT - 60, IMPORTED_AT - 60))
    seen = stop_workers_on_interrupt(lambda self: stop.exists())(None)
    assert seen is False and not stop.exists()


def test_ctrl_c_of_a_submitit_local_sweep_keeps_each_jobs_summary_and_says_how_to_continue(tmp_path):
    # submitit's controller SIGKILLs its job 1 s after passing Ctrl-C on: jobs drawing diffusion's and
    # curvature's figures lost summary.json, which was written after them; the sweep ended with a bare line
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "seed=0,1", "device=cpu", "logger=none", "trainer.progress=false",
            "trainer.steps=1000000", "trainer.checkpoint_every=100", "analysis=[diffusion,curvature]",
            "analysis.curvature.start=0", "analysis.curvature.every=200", "analysis.curvature.window=100",
            f"hydra.sweep.dir={sweep}"]
    proc = sweep_past_first_checkpoints(tmp_path, sweep, args)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
    out, err = communicate_or_dump(proc, timeout=120)
    assert proc.returncode == 130
    assert f"sgdexp: interrupted: the same command with trainer.resume=true hydra.sweep.dir={sweep} continues it" in err
    summaries = [sweep / job / "summary.json" for job in ("0", "1")]
    wait_until = time.time() + 30
    while not all(s.exists() for s in summaries) and time.time() < wait_until:
        time.sleep(0.2)  # the jobs finish after the launching process, which does not wait for them
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["status"] == "interrupted" and summary["checkpoint_step"] >= 100
