"""The command line as users run it: clear one-line errors, and a joblib multirun."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FAST, cli

BAD = [
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["optimizer.momentum=1.5"], "optimizer.momentum=1.5"),
    (["noise.batch_size=0"], "noise.batch_size=0"),
    (["noise.batch_size=100000"], "noise.batch_size=100000"),
    (["dataset.subset=99999"], "dataset.subset=99999"),
    (["model=transformer"], "model='transformer'"),
    (["dataset=imagenet"], "dataset='imagenet'"),
    (["dataset=cifar10", "dataset.root=nowhere"], "cifar-10-batches-py/data_batch_1"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[a[0] for a, _ in BAD])
def test_bad_input_is_one_line_and_writes_no_run(tmp_cwd, args, needle):
    proc = cli(args + ["logger=none", "device=cpu"], cwd=tmp_cwd)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("sgdexp: error: ") and needle in lines[0], proc.stderr
    assert "allowed" in lines[0] or "download=true" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list(tmp_cwd.rglob("summary.json")) and not list(tmp_cwd.rglob("metrics.jsonl"))


def test_joblib_multirun_two_jobs_wandb_offline(tmp_cwd):
    proc = cli(["-m", "optimizer.lr=0.05,0.1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                "hydra.sweep.dir=sweep", "trainer.steps=40", "trainer.eval_every=20", "trainer.progress=false",
                "logger=wandb", "device=cpu"], cwd=tmp_cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_cwd / "sweep").glob("[0-9]"))
    assert len(jobs) == 2
    lrs = set()
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
        lrs.add(json.loads((job / "metrics.jsonl").read_text().splitlines()[1])["lr"])
    assert lrs == {0.05, 0.1}
    assert not (tmp_cwd / "wandb").exists() and not (tmp_cwd / "outputs").exists()
    assert len({(job / "wandb_run_id").read_text() for job in jobs}) == 2


SWEEP = [*FAST, "trainer.steps=20", "trainer.eval_every=10"]


def test_a_bad_value_in_any_job_stops_the_sweep_before_its_first(tmp_cwd):
    # job #0 is valid: before, it trained before job #1 stopped the sweep
    proc = cli(["-m", "optimizer.lr=0.1,-1", *SWEEP], cwd=tmp_cwd)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode != 0 and lines == ["sgdexp: error: optimizer.lr=-1.0 is not allowed: must be > 0.0 "
                                              "(sweep job #1)"], proc.stderr[-2000:]
    assert list(tmp_cwd.iterdir()) == []  # no job ran, and the sweep directory is gone


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_job_refused_by_its_data_does_not_stop_the_sweeps_other_jobs(tmp_cwd, launcher):
    # a batch larger than the dataset is found by jobs #1 and #3 themselves, with the data: each is refused
    # with its one line, jobs #0 and #2 run, and the sweep exits non-zero naming both refused jobs (Hydra's
    # sweeper raises the first failure only, after its own "Error executing job" line, which is not repeated)
    proc = cli(["-m", "noise.batch_size=16,5000,32,6000", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep",
                *SWEEP], cwd=tmp_cwd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    refusals = [f"noise.batch_size={b} is not allowed: at most the 1437 training samples of dataset=digits"
                for b in (5000, 6000)]
    assert all(f"sgdexp: error: {r}" in proc.stderr.splitlines() for r in refusals)
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("sgdexp: error: 2 of the sweep's 4 jobs were refused (the others ran): job 1 "
                           "noise.batch_size=5000 ") and f"; job 3 noise.batch_size=6000 " in last, last
    assert all(r in last for r in refusals)
    assert "Error executing job" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_cwd / "sweep").glob("[0-9]")) == ["0", "2"]
    for job in ("0", "2"):
        assert json.loads((tmp_cwd / "sweep" / job / "summary.json").read_text())["status"] == "completed"
    if launcher == "basic":  # the report says the sweep was four jobs, not the two it finds
        from sgdexp.report.build import build_report

        html = build_report(tmp_cwd / "sweep").read_text()
        assert "2 jobs (2 completed)" in html and "asked for 4 jobs: 2 have no directory here" in html


def test_diverging_run_exits_zero_and_says_so(tmp_cwd):
    proc = cli(["optimizer.lr=1e6", "trainer.steps=200", "logger=none", "device=cpu", "trainer.progress=false",
                "hydra.run.dir=run"], cwd=tmp_cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_cwd / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] <= 200
    assert "Traceback" not in proc.stderr
    # the last line's metrics are not the diverged weights': it says when they were evaluated
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    assert f"diverged at step {summary['diverged_step']} (evaluated at step {summary['evaluated_step']}): " \
           f"train/loss=" in last, last


def test_a_key_set_on_the_command_line_never_lands_in_the_run_or_the_terminal(tmp_cwd):
    # through Hydra's env_set the key reaches the job's environment (as W&B reads it); the run's record
    # of Hydra's config and overrides hides it, and a mistaken config key echoes no value
    # with W&B (offline) on: its run file records the command line, which held the key
    secret = "f00dfeed" * 5
    with_wandb = [o for o in SWEEP if o != "logger=none"]
    proc = cli([f"+hydra.job.env_set.WANDB_API_KEY={secret}", *with_wandb, "hydra.run.dir=run"], cwd=tmp_cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WANDB_API_KEY: <hidden>" in (tmp_cwd / "run" / ".hydra" / "hydra.yaml").read_text()
    assert list((tmp_cwd / "run" / "wandb").rglob("*.wandb")), "no W&B run file: the check below would be empty"
    proc2 = cli([*SWEEP, "logger=wandb", f"+logger.api_key={secret}", "hydra.run.dir=other"], cwd=tmp_cwd)
    assert proc2.returncode == 2 and "logger.api_key='<hidden>' is not allowed" in proc2.stderr
    leaked = [p for p in tmp_cwd.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked and secret not in proc.stdout + proc.stderr + proc2.stdout + proc2.stderr


def test_an_output_directory_that_cannot_be_made_is_one_line(tmp_cwd):
    # Hydra's mkdir raised a 30-line FileExistsError / NotADirectoryError traceback
    (tmp_cwd / "afile").write_text("not a folder")
    for arg, why in (("hydra.run.dir=afile", "(it is a file)"), ("hydra.run.dir=afile/run", "(afile is a file)"),
                     ("hydra.run.dir=/proc/sgdexp-run", "(cannot make /proc/sgdexp-run")):
        proc = cli([arg, *FAST], cwd=tmp_cwd)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and why in lines[0], proc.stderr[-2000:]
    proc = cli(["-m", "seed=0,1", "hydra.sweep.dir=afile/sweep", *FAST], cwd=tmp_cwd)
    assert proc.returncode != 0 and proc.stderr.strip().endswith("(afile is a file)"), proc.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "sgdexp.report", str(tmp_cwd), "--out", "afile"], cwd=tmp_cwd,
                            capture_output=True, text=True)
    assert report.returncode == 2 and report.stderr.strip().endswith("a directory (a file is in its place)")
    assert sorted(p.name for p in tmp_cwd.iterdir()) == ["afile"]
