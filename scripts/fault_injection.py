"""Fault injection: kill -9 at random moments, W&B and disk failures, 8 jobs at once, bad inputs.

    python scripts/fault_injection.py [--kills 20] [--quick] [--seed 0] [--only kills,faults,jobs,inputs]

Every run is `python -m sgdexp` in a subprocess, as users run it. Prints three figures:
  kills tried / identical resumes / corrupt checkpoints
  faults injected / runs that kept their data
  bad inputs tried / one-line errors
and exits non-zero when one of them falls short (tests/test_fault_injection.py runs it, marked slow).

Kills hit four moments, in turn: a step (the parent sends SIGKILL once metrics.jsonl has a random
number of rows, after a random delay), an evaluation, an analysis and a checkpoint write (the child
kills itself inside them: `--child MOMENT K` patches the function to SIGKILL its own process at the
K-th call; a checkpoint write is cut after half of its bytes). Each killed run is resumed with
trainer.resume=true and its metrics.jsonl and arrays.jsonl must equal an uninterrupted run's.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
RUN = ["device=cpu", "logger=none", "trainer.progress=false", "trainer.steps=60", "trainer.log_every=5",
       "trainer.eval_every=10", "trainer.checkpoint_every=15", "analysis=[noise_stats,diffusion,curvature]",
       "analysis.noise_stats.every=20", "analysis.noise_stats.batches=8", "analysis.noise_stats.params=50",
       # the analyses that keep state across steps (diffusion's records, curvature's windows) resume too
       "analysis.diffusion.log_every=10", "analysis.curvature.start=5", "analysis.curvature.every=25",
       "analysis.curvature.window=12"]
MOMENTS = ("step", "evaluate", "analysis", "checkpoint")


# ----------------------------------------------------------------------------- child side
def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _at_call(k: int, then: Callable) -> Callable:
    """A wrapper that runs `then(real, *args)` at the k-th call and the real function otherwise."""
    calls = {"n": 0}

    def wrap(real):
        def inner(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == k:
                return then(real, *args, **kwargs)
            return real(*args, **kwargs)
        return inner
    return wrap


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def child(moment: str, k: int, argv: List[str]) -> None:
    """Run the CLI with `moment`'s fault armed at its k-th occurrence."""
    import torch

    from sgdexp import checkpoint, gradients
    from sgdexp.tasks import train
    from sgdexp.tracking import store, wandb_run

    if moment == "evaluate":
        real = gradients.GradientSource.evaluate
        gradients.GradientSource.evaluate = _at_call(k, lambda r, *a, **kw: (r(*a, **kw), _die()))(real)
    elif moment == "analysis":
        real = train.Training.analyse
        seen = {"n": 0}

        def analyse(self, step, due):
            seen["n"] += bool(due)
            if due and seen["n"] == k:
                due[0].compute(step)  # the analysis' work, then the kill before anything is logged
                _die()
            return real(self, step, due)
        train.Training.analyse = analyse
    elif moment == "checkpoint":
        real_save = torch.save

        def cut(r, state, path, *a, **kw):
            r(state, path, *a, **kw)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)  # the write stopped half way
            _die()
        checkpoint.torch.save = _at_call(k, cut)(real_save)
    elif moment == "disk_metrics":  # the disk fills up at the k-th metrics row
        store.MetricsStore.log = _at_call(k, lambda r, *a, **kw: _enospc())(store.MetricsStore.log)
    elif moment == "disk_checkpoint":  # ... in the middle of the k-th checkpoint
        checkpoint.torch.save = _at_call(k, lambda r, *a, **kw: _enospc())(torch.save)
    elif moment == "disk_summary":  # ... when the summary is written at the end
        store.write_json_atomic = _at_call(k, lambda r, *a, **kw: _enospc())(store.write_json_atomic)
    elif moment == "wandb_raises":  # every W&B call from the k-th log on raises
        import wandb.sdk.wandb_run as wr

        real_log = wr.Run.log
        state = {"n": 0}

        def log(self, *a, **kw):
            state["n"] += 1
            if state["n"] >= k:
                raise RuntimeError("wandb: simulated failure")
            return real_log(self, *a, **kw)
        wr.Run.log = log
        wr.Run.finish = lambda self, *a, **kw: _enospc()
    elif moment == "wandb_unwritable":  # its directory cannot be made: a file sits where it goes
        pass  # the parent puts the file there; nothing to patch
    elif moment != "none":
        raise SystemExit(f"unknown moment {moment}")
    del wandb_run
    sys.argv = ["sgdexp", *argv]
    from sgdexp.__main__ import cli

    cli()


# ----------------------------------------------------------------------------- parent side
def _env() -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}


def run_cli(args: List[str], cwd: Path, moment: str = "none", k: int = 0, timeout: float = 600,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", moment, str(k), "--", *args]
    return subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> List[dict]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def checkpoint_ok(run: Path) -> bool:
    """The checkpoint, if any, loads with weights_only=True."""
    import torch

    path = run / "checkpoints" / "last.pt"
    if not path.exists():
        return True
    try:
        torch.load(path, weights_only=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def same_record(run: Path, reference: Path) -> Tuple[bool, str]:
    for name in ("metrics.jsonl", "arrays.jsonl"):
        a, b = rows(run / name), rows(reference / name)
        steps = [r["step"] for r in a]
        if len(steps) != len(set(steps)) and name == "metrics.jsonl":
            return False, f"{name}: duplicated steps"
        if a != b:
            return False, f"{name}: {len(a)} rows against {len(b)}, first difference at step " + str(
                next((x.get("step") for x, y in zip(a, b) if x != y), "end"))
    return True, ""


def kill_step(args: List[str], cwd: Path, rng: random.Random) -> bool:
    """Start a run, SIGKILL it after a random number of metrics rows plus a random delay. True if killed."""
    run = cwd / args[-1].split("=", 1)[1]
    cmd = [sys.executable, "-m", "sgdexp", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = rng.randint(1, 10)
    while proc.poll() is None and len(rows(run / "metrics.jsonl")) < target:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def kill_and_resume(i: int, work: Path, seed: int) -> Tuple[bool, bool, str]:
    """Run i: killed at moment MOMENTS[i % 4], then resumed. (checkpoint readable, record identical, line)."""
    rng = random.Random(seed * 1000 + i)
    moment = MOMENTS[i % len(MOMENTS)]
    run = work / f"kill{i:02d}"
    args = RUN + [f"hydra.run.dir={run}"]
    if moment == "step":
        killed = kill_step(args, work, rng)
    else:
        k = {"evaluate": rng.randint(2, 12), "analysis": rng.randint(2, 4), "checkpoint": rng.randint(1, 4)}[moment]
        killed = run_cli(args, work, moment, k).returncode == -signal.SIGKILL
    ok_checkpoint = checkpoint_ok(run)
    resumed = run_cli(args + ["trainer.resume=true"], work)
    same, why = same_record(run, work / "reference") if resumed.returncode == 0 else (False, resumed.stderr[-300:])
    return ok_checkpoint, same, (f"  kill {i:2d} during {moment:10s} killed={killed!s:5s} checkpoint readable="
                                 f"{ok_checkpoint!s:5s} resume identical={same}{' (' + why + ')' if why else ''}")


def kills(n: int, work: Path, seed: int, log: Callable[[str], None], workers: int = 4) -> Tuple[int, int, int]:
    """n runs killed and resumed, `workers` at a time (each a pair of subprocesses)."""
    from concurrent.futures import ThreadPoolExecutor

    identical = corrupt = 0
    with ThreadPoolExecutor(workers) as pool:
        for ok_checkpoint, same, line in pool.map(lambda i: kill_and_resume(i, work, seed), range(n)):
            corrupt += not ok_checkpoint
            identical += same
            log(line)
    return n, identical, corrupt


def faults(work: Path, log: Callable[[str], None]) -> Tuple[int, int]:
    """Each fault: the run's earlier data stay readable (metrics rows, checkpoint), it ends as documented,
    and, for disk faults, a resume once the disk is back gives the uninterrupted run's record."""
    reference = work / "reference"
    wandb_run = [a for a in RUN if a != "logger=none"] + ["logger=wandb", "logger.log_checkpoint=false"]
    injected = kept = 0
    cases = [("wandb_raises", 5, wandb_run), ("wandb_unwritable", 0, wandb_run),
             ("disk_metrics", 8, RUN), ("disk_checkpoint", 2, RUN), ("disk_summary", 1, RUN)]
    for moment, k, base in cases:
        run = work / f"fault_{moment}"
        if moment == "wandb_unwritable":
            run.mkdir(parents=True)
            (run / "wandb").write_text("not a directory")
        args = base + [f"hydra.run.dir={run}"]
        proc = run_cli(args, work, moment, k)
        injected += 1
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        errors = [line for line in proc.stderr.splitlines() if line.startswith("sgdexp: error:")]
        if moment.startswith("wandb"):
            warned = (proc.stderr + (run / "sgdexp.log").read_text()).count("going on with the local store only")
            ok = proc.returncode == 0 and summary.get("status") == "completed" and warned >= 1 and \
                same_record(run, reference)[0]
            detail = f"status={summary.get('status')} warnings={warned}"
        else:
            steps = [r["step"] for r in rows(run / "metrics.jsonl")]
            intact = checkpoint_ok(run) and steps == sorted(set(steps)) and \
                not list((run / "checkpoints").glob("*.tmp"))
            one_line = proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr
            status_ok = summary.get("status") == "failed" or moment == "disk_summary"
            resumed = run_cli(args + ["trainer.resume=true"], work)
            same = resumed.returncode == 0 and same_record(run, reference)[0]
            ok = intact and one_line and status_ok and same
            detail = (f"exit={proc.returncode} status={summary.get('status')} intact={intact} one line={one_line} "
                      f"resume identical={same}: {errors[0][:140] if errors else proc.stderr[-300:]}")
        kept += ok
        log(f"  fault {moment:17s} kept data={ok!s:5s} {detail}")
    return injected, kept


def jobs(work: Path, log: Callable[[str], None], n: int = 8) -> Tuple[int, int]:
    """n jobs at once through joblib, W&B offline and compiled samplers on: no shared directory collides."""
    sweep = work / "sweep"
    args = ["-m", f"seed={','.join(map(str, range(n)))}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n}",
            f"hydra.sweep.dir={sweep}", "device=cpu", "trainer.progress=false", "trainer.steps=20",
            "trainer.eval_every=10", "noise=gd_white", "noise.sigma=0.01", "trainer.compile=true",
            "logger=wandb", "logger.log_checkpoint=false"]
    proc = subprocess.run([sys.executable, "-m", "sgdexp", *args], cwd=work, env=_env(), capture_output=True,
                          text=True, timeout=1200)
    good = 0
    ids = set()
    for i in range(n):
        job = sweep / str(i)
        summary = json.loads((job / "summary.json").read_text()) if (job / "summary.json").exists() else {}
        offline = list((job / "wandb").glob("offline-run-*"))
        if summary.get("status") == "completed" and len(offline) == 1 and (job / "wandb_run_id").exists():
            good += 1
            ids.add((job / "wandb_run_id").read_text())
    stray = [p.name for p in work.iterdir() if p.name in ("wandb", "outputs", "multirun")]
    collided = len(ids) != good or bool(stray) or proc.returncode != 0
    log(f"  {n} joblib jobs: completed with their own W&B run {good}/{n}, distinct W&B ids {len(ids)}, "
        f"stray shared directories {stray or 'none'}, exit {proc.returncode}")
    return n, good if not collided else 0


def bad_inputs(work: Path, log: Callable[[str], None]) -> Tuple[int, int]:
    """Each user mistake: one line `sgdexp: error: ...`, no traceback, exit non-zero."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_datasets import write_cifar

    crafted = work / "crafted"
    write_cifar(crafted, "cifar10", n_per_file=4)
    (crafted / "cifar-10-batches-py" / "data_batch_2").write_bytes(
        b"cposix\nsystem\n(S'touch " + str(work / "pwned").encode() + b"'\ntR.")
    busy = work / "reference"  # a finished run: overwrite and mismatched resume must be refused
    base = ["logger=none", "device=cpu", "trainer.progress=false"]
    cases = [
        # the existing table (tests/test_cli.py)
        ["optimizer.lr=-0.1"], ["optimizer.momentum=1.5"], ["noise.batch_size=0"], ["noise.batch_size=100000"],
        ["dataset.subset=99999"], ["model=transformer"], ["dataset=imagenet"],
        ["dataset=cifar10", "dataset.root=nowhere"],
        # the new ones
        ["optimizer.lrr=0.1"], ["noise.hurst=0.7"], ["trainer.steps=abc"], ["analysis.noise_stats.every=5"],
        ["dataset=mnist", f"dataset.root={work / 'offline'}", "dataset.download=true"],
        ["-m", "seed=0,1", "hydra/launcher=submitit_slurm"],
        ["dataset=cifar10", f"dataset.root={crafted}"],
        RUN[3:] + [f"hydra.run.dir={busy}"],  # a directory holding a run, without resume
        RUN[3:] + [f"hydra.run.dir={busy}", "trainer.resume=true", "optimizer.lr=0.3"],
        RUN[3:] + [f"hydra.run.dir={busy}", "trainer.resume=true", "model.widths=[64]"],
    ]
    tried = one_line = 0
    env = _env()
    env["PATH"] = os.path.dirname(sys.executable)  # no srun or sbatch
    before = {p: p.stat().st_mtime_ns for p in busy.rglob("*") if p.is_file()}
    for case in cases:
        cwd = work / f"input{tried}"
        cwd.mkdir()
        proc = subprocess.run([sys.executable, "-m", "sgdexp", *base, *case], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        ok = (proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("sgdexp: error: ")
              and "Traceback" not in proc.stdout + proc.stderr and not list(cwd.iterdir()))
        tried += 1
        one_line += ok
        log(f"  {' '.join(case)[-70:]:70s} one line={ok!s:5s} {lines[0][:110] if lines else proc.stderr[-200:]}")
    after = {p: p.stat().st_mtime_ns for p in busy.rglob("*") if p.is_file()}
    if before != after or (work / "pwned").exists():
        log("  a refused run changed the directory it was refused, or the crafted pickle ran")
        one_line = 0
    return tried, one_line


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="8 kills instead of --kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4, help="killed runs in flight at once")
    parser.add_argument("--only", default="kills,faults,jobs,inputs")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="sgdexp-faults-"))
    log = lambda line: print(line, flush=True)  # noqa: E731
    figures, ok = [], True
    t0 = time.perf_counter()
    try:
        log(f"working in {work}")
        reference = work / "reference"
        proc = run_cli(RUN + [f"hydra.run.dir={reference}"], work)
        if proc.returncode != 0:
            log(proc.stderr[-3000:])
            return 1
        if "kills" in only:
            tried, identical, corrupt = kills(8 if args.quick else args.kills, work, args.seed, log, args.workers)
            figures.append(f"kills tried / identical resumes / corrupt checkpoints: {tried} / {identical} / {corrupt}")
            ok &= identical == tried and corrupt == 0
        if "faults" in only:
            injected, kept = faults(work, log)
            figures.append(f"faults injected / runs that kept their data: {injected} / {kept}")
            ok &= kept == injected
        if "jobs" in only:
            n, good = jobs(work, log)
            figures.append(f"joblib jobs at once / without collision: {n} / {good}")
            ok &= good == n
        if "inputs" in only:
            tried, one_line = bad_inputs(work, log)
            figures.append(f"bad inputs tried / one-line errors: {tried} / {one_line}")
            ok &= one_line == tried
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for line in figures:
        print(line)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[5:])
    else:
        sys.exit(main())
