"""Ctrl-C in a joblib or submitit_local sweep (sgdexp.interrupts): the running jobs end as interrupted
runs, the others do not start, and the sweep's last line says how far each got and how to continue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_ctrl_c_while_the_workers_start_leaves_no_traceback_and_says_each_job_did_not_start(tmp_path):
    # Workers took the terminal's Ctrl-C while importing: each printed loky's start-up traceback (or died
    # of SIGINT's default action) and the sweep's line was loky's error ("a worker process stopped
    # before its job could record it (BrokenProcessPool)"), in 7 of 10 tries 0.4-1.4 s after launch
    from sgdexp.interrupts import child_processes

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "sgdexp", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                             "seed=0,1,2", *FAST, "trainer.steps=1000000", f"hydra.sweep.dir={sweep}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"})
    deadline = time.time() + 120

    def workers():
        return [pid for pid in child_processes(proc.pid)
                if b"loky" in Path(f"/proc/{pid}/cmdline").read_bytes()] if proc.poll() is None else []

    while len(workers()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.3)  # the workers are importing (torch takes them a second or more)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = communicate_or_dump(proc, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    assert err.strip().splitlines()[-1].count(": not started") == 3, err[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]


def test_a_stale_stop_file_of_a_killed_sweep_does_not_stop_a_new_one():
    # a sweep killed (SIGKILL) after its first Ctrl-C leaves its stop file; a later sweep given the same pid
    # must not read it as its own
    from sgdexp.interrupts import IMPORTED_AT, stop_file, stop_workers_on_interrupt

    stop = stop_file(os.getpid())
    stop.touch()
    os.utime(stop, (IMPORTED_AT - 60, IMPORTED_AT - 60))
    seen = stop_workers_on_interrupt(lambda self: stop.exists())(None)
    assert seen is False and not stop.exists()


def processes_running_from(directory) -> dict:
    """{pid: command line} of the processes whose command line names `directory` (submitit's
    controllers and jobs name their folder in the sweep)."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in text:
            found[int(cmdline.parent.name)] = text
    return found


@pytest.fixture
def submitit_sweep(tmp_path):
    """A sweep directory for a `submitit_local` sweep; what still runs from it at the end is killed (a
    failing test leaves no jobs behind: before the fix, `kill -INT` of the parent left them training)."""
    sweep = tmp_path / "sweep"
    yield sweep
    for pid in processes_running_from(sweep):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def submitit_local_sweep(sweep) -> list:
    """A 2-job `submitit_local` sweep whose jobs, once interrupted, draw diffusion's and curvature's
    figures for a few seconds."""
    return ["-m", "hydra/launcher=submitit_local", "seed=0,1", "device=cpu", "logger=none", "trainer.progress=false",
            "trainer.steps=1000000", "trainer.checkpoint_every=100", "analysis=[diffusion,curvature]",
            "analysis.curvature.start=0", "analysis.curvature.every=200", "analysis.curvature.window=100",
            f"hydra.sweep.dir={sweep}"]


@pytest.mark.parametrize("target", ["group", "parent"])
def test_ctrl_c_of_a_submitit_local_sweep_ends_as_a_joblib_sweep_does(tmp_path, submitit_sweep, target):
    # submitit's job controllers took the terminal's Ctrl-C too: each printed a KeyboardInterrupt
    # traceback and SIGKILLed its job 1 s later (jobs drawing diffusion's and curvature's figures lost
    # their summaries); the parent ended at once with a bare line, before its jobs had written anything,
    # and a `kill -INT` of the parent alone did not reach the jobs
    sweep = submitit_sweep
    proc = sweep_past_first_checkpoints(tmp_path, sweep, submitit_local_sweep(sweep))
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
    else:
        proc.send_signal(signal.SIGINT)
    out, err = communicate_or_dump(proc, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("sgdexp: the sweep was interrupted: job 0 seed=0 ") \
        and last.endswith(f"; the same command with trainer.resume=true hydra.sweep.dir={sweep} continues it")
    for job in ("0", "1"):  # written before the sweep's last line: the parent waits for its jobs
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["checkpoint_step"] >= 100
        assert f"interrupted at step {summary['step']} (checkpoint at step {summary['checkpoint_step']})" in last
        assert (sweep / job / "figures" / "msd.png").exists()  # not killed while drawing
    assert not processes_running_from(sweep)


def test_a_second_ctrl_c_kills_a_submitit_local_sweeps_jobs_and_controllers(tmp_path, submitit_sweep):
    # the jobs take the first Ctrl-C only, and their controllers none: the parent kills them
    sweep = submitit_sweep
    proc = sweep_past_first_checkpoints(tmp_path, sweep, submitit_local_sweep(sweep))
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)  # the jobs are stopping, and then draw their figures for seconds
    os.killpg(proc.pid, signal.SIGINT)
    out, err = communicate_or_dump(proc, timeout=60)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"sgdexp: interrupted: the same command with trainer.resume=true "
                                            f"hydra.sweep.dir={sweep} continues it")
    gone_by = time.time() + 1.0  # SIGKILLed: gone within milliseconds, where the figures alone take seconds
    while processes_running_from(sweep) and time.time() < gone_by:
        time.sleep(0.02)
    assert not processes_running_from(sweep)
    assert not any(sweep.glob("*/figures/msd.png"))
