"""Run directories that cannot be corrupted: one owner, no overwrite, resume guard, untrusted files."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import communicate_or_dump, default_sigint, make_cfg, train_run
from fake_datasets import write_cifar
from sgdexp.errors import ConfigError, StorageError
from sgdexp.rundir import LOCK, RunDirectory, check_resume, load_checkpoint_checked
from sgdexp.tasks import run_task
from sgdexp.tracking import read_metrics

SHORT = ["trainer.steps=40", "trainer.eval_every=20", "trainer.log_every=10", "trainer.checkpoint_every=20"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One completed 40-step run; tests copy it rather than train again."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train_run(out, SHORT)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.mark.parametrize("overrides,needle", [
    (["optimizer.lr=0.3"], "optimizer.lr: 0.1 in the checkpoint, 0.3 now"),
    (["model.widths=[64]"], "model.widths"),
    (["seed=1"], "seed: 0 in the checkpoint, 1 now"),
    (["trainer.steps=30"], "at least the checkpoint's step 40"),
])
def test_refused_resume_leaves_directory_byte_identical(finished, tmp_path, overrides, needle):
    run = copy_of(finished, tmp_path)
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        run_task(make_cfg(SHORT + ["trainer.resume=true"] + overrides), run)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert snapshot(run) == before


def test_a_run_without_checkpoint_restarts_only_with_its_recorded_config(finished, tmp_path):
    # killed before its first checkpoint (or a run that keeps none): a resume starts again from step 0 and
    # rewrites the record, so only with the config in .hydra/config.yaml, and never where there is none
    from omegaconf import OmegaConf

    run = copy_of(finished, tmp_path)
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(ConfigError, match="without a checkpoint, and its config .* none there"):
        run_task(make_cfg(SHORT + ["trainer.resume=true"]), run)
    (run / ".hydra").mkdir()
    OmegaConf.save(make_cfg(SHORT), run / ".hydra" / "config.yaml", resolve=False)
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        run_task(make_cfg(SHORT + ["trainer.resume=true", "optimizer.lr=0.3"]), run)
    assert "optimizer.lr: 0.1 in the run's recorded config, 0.3 now" in str(err.value)
    assert snapshot(run) == before
    summary = train_run(run, SHORT + ["trainer.resume=true"])
    assert summary["status"] == "completed"
    assert (run / "metrics.jsonl").read_bytes() == (finished / "metrics.jsonl").read_bytes()


def test_no_overwrite_without_resume(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    before = snapshot(run)
    with pytest.raises(ConfigError, match="resume it with trainer.resume=true, or choose another directory"):
        run_task(make_cfg(SHORT + ["seed=3"]), run)
    assert snapshot(run) == before


def test_resume_may_extend_steps_and_change_logging(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    summary = train_run(run, ["trainer.steps=60", "trainer.eval_every=20", "trainer.log_every=5",
                              "trainer.checkpoint_every=20", "trainer.resume=true"])
    assert summary["status"] == "completed" and summary["step"] == 60
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 60 and 45 in steps
    record = json.loads((run / "resumes.jsonl").read_text())
    assert record["step"] == 40 and record["changed"]["trainer.steps"] == [40, 60]


def test_steps_may_not_stretch_a_schedule_laid_out_over_them():
    cfg = make_cfg(SHORT + ["trainer.lr_schedule=cosine"])
    old = json.loads(json.dumps(__import__("omegaconf").OmegaConf.to_container(cfg, resolve=True)))
    new = make_cfg(["trainer.steps=80", "trainer.eval_every=20", "trainer.log_every=10",
                    "trainer.checkpoint_every=20", "trainer.lr_schedule=cosine"])
    with pytest.raises(ConfigError, match="cosine schedule is laid out over trainer.steps"):
        check_resume(new, old, step=40)
    changed = check_resume(make_cfg(SHORT + ["trainer.lr_schedule=cosine", "device=auto", "logger=wandb"]), old, step=40)
    assert changed["device"] == ("cpu", "auto") and changed["logger.name"] == ("none", "wandb")
    assert all(k == "device" or k.startswith("logger.") for k in changed)
    changed = check_resume(make_cfg(SHORT + ["trainer.lr_schedule=cosine", "trainer.hvp_graph_mib=256"]), old, step=40)
    assert changed == {"trainer.hvp_graph_mib": (None, 256)}
    # diffusion's lag grid is laid out over trainer.steps too: extending crashed at the first MSD
    from omegaconf import OmegaConf

    old = OmegaConf.to_container(make_cfg(SHORT + ["analysis=[diffusion]"]), resolve=True)
    with pytest.raises(ConfigError, match=r"trainer.steps=80 is not allowed: 40 .* with analysis=\[diffusion\]"):
        check_resume(make_cfg(SHORT[1:] + ["trainer.steps=80", "analysis=[diffusion]"]), old, step=40)


def test_a_key_added_since_the_checkpoint_resumes_only_at_null():
    # a run checkpointed by a version without trainer.stop_at_train_accuracy
    cfg = make_cfg(SHORT)
    old = json.loads(json.dumps(__import__("omegaconf").OmegaConf.to_container(cfg, resolve=True)))
    del old["trainer"]["stop_at_train_accuracy"]
    assert check_resume(cfg, old, step=40) == {}  # left off: the same run
    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_accuracy: \(absent\) in the checkpoint, 0.9 now"):
        check_resume(make_cfg(SHORT + ["trainer.stop_at_train_accuracy=0.9"]), old, step=40)
    del old["trainer"]["chunk_size"]  # a key added at a value other than null is refused too
    with pytest.raises(ConfigError, match=r"trainer.chunk_size: \(absent\) in the checkpoint, 2048 now"):
        check_resume(cfg, old, step=40)


def test_checkpoint_of_another_model_is_one_line(finished):
    from sgdexp.models import build_model

    cfg = make_cfg(["model.widths=[64,64]"])
    model = build_model(cfg.model, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"0\.weight has shape \(128, 64\) there, \(64, 64\) here|weight has shape") as err:
        load_checkpoint_checked(finished / "checkpoints" / "last.pt", model, key="task.init_from")
    assert str(err.value).startswith("task.init_from=") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="a checkpoint file that exists"):
        load_checkpoint_checked(finished / "nope.pt", model, key="task.init_from")


HOLDER = """
import sys, time
from sgdexp.config import compose_config
from sgdexp.rundir import RunDirectory
cfg = compose_config(["logger=none"])
with RunDirectory(sys.argv[1]).claim(cfg):
    print("held", flush=True)
    time.sleep(600)
"""


def test_lock_refuses_a_second_run_and_is_released_by_kill(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="another sgdexp process holds it"):
            run_task(make_cfg(SHORT), run)
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK).exists()  # a killed owner leaves its lock file, not its lock
    assert train_run(run, SHORT)["status"] == "completed"
    assert not (run / LOCK).exists()  # the run that took it over removes it at its end


def test_requeued_submitit_job_resumes_by_itself(finished, tmp_path, monkeypatch):
    run = copy_of(finished, tmp_path)
    rows = read_metrics(run / "metrics.jsonl")
    (run / "summary.json").unlink()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))  # as if preempted
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    # The checkpoint of step 20, as a preemption at step 30 would have left it.
    from sgdexp.checkpoint import save_checkpoint

    half = tmp_path / "half"
    train_run(half, ["trainer.steps=20", "trainer.eval_every=20", "trainer.log_every=10", "trainer.checkpoint_every=20"])
    state = torch.load(half / "checkpoints" / "last.pt", weights_only=True)
    state["config"] = ckpt["config"]
    save_checkpoint(run, state)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    summary = train_run(run, SHORT)  # no trainer.resume=true: the requeue rule implies it
    assert summary["status"] == "completed"
    assert read_metrics(run / "metrics.jsonl") == rows


def test_disk_full_mid_run_fails_with_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    from sgdexp.tracking import store

    real = store.MetricsStore.log

    def log(self, row):
        if row["step"] > 25:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.out_dir / "metrics.jsonl"))
        real(self, row)

    monkeypatch.setattr(store.MetricsStore, "log", log)
    with pytest.raises(StorageError) as err:
        train_run(tmp_path, SHORT)
    assert "\n" not in str(err.value) and "No space left on device" in str(err.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["step"] == 20 and "No space left" in summary["error"]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0, 10, 20]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 20


def test_crafted_cifar_pickle_runs_no_code(tmp_path):
    from sgdexp.data import load_dataset

    write_cifar(tmp_path, "cifar10", n_per_file=4)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f, protocol=2)
    cfg = make_cfg(["dataset=cifar10", f"dataset.root={tmp_path}"]).dataset
    with pytest.raises(ConfigError, match=r"data_batch_3 asks for (posix|os)\.system \(refused"):
        load_dataset(cfg, torch.device("cpu"))
    assert not marker.exists()
    write_cifar(tmp_path, "cifar10", n_per_file=4)  # the real format still loads
    assert load_dataset(cfg, torch.device("cpu")).n_train == 20


def test_offline_download_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from sgdexp.data import load_dataset

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    for name in ("mnist", "cifar10"):
        cfg = make_cfg([f"dataset={name}", f"dataset.root={root}", "dataset.download=true"]).dataset
        with pytest.raises(ConfigError, match="a reachable network") as err:
            load_dataset(cfg, torch.device("cpu"))
        assert "\n" not in str(err.value)
        assert not root.exists()


# ----------------------------------------------------------------------------- the command line
def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("sgdexp: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def test_cli_refused_resume_is_one_line_and_changes_nothing(finished, tmp_path):
    from conftest import FAST, cli

    run = copy_of(finished, tmp_path)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("optimizer:\n  lr: 0.1\n")
    (run / "sgdexp.log").write_text("the first run's log\n")
    before = snapshot(run)
    line = one_line_error(cli(FAST + SHORT + ["trainer.resume=true", "optimizer.lr=0.3", "hydra.run.dir=run"],
                              cwd=tmp_path))
    assert "optimizer.lr: 0.1 in the checkpoint, 0.3 now" in line
    assert snapshot(run) == before


def test_cli_unknown_key_and_slurm_without_srun(tmp_cwd):
    from conftest import cli

    line = one_line_error(cli(["optimizer.lrr=0.1", "logger=none"], cwd=tmp_cwd))
    assert "optimizer.lrr=0.1 is not allowed: did you mean optimizer.lr" in line
    env_path = os.environ["PATH"]
    try:
        os.environ["PATH"] = os.path.dirname(sys.executable)  # python, but no srun or sbatch
        line = one_line_error(cli(["-m", "seed=0,1", "hydra/launcher=submitit_slurm", "logger=none"], cwd=tmp_cwd))
    finally:
        os.environ["PATH"] = env_path
    assert "SLURM is not available here" in line
    assert list(tmp_cwd.iterdir()) == []  # no sweep directory, no outputs


def test_a_key_that_a_swept_member_lacks_is_one_line(tmp_cwd):
    from conftest import cli

    # anomalous_diffusion at scale=paper sweeps model=resnet,vgg16: the VGG has no depth
    args = ["+experiment=anomalous_diffusion", "scale=paper", "model.depth=14", "logger=none"]
    line = one_line_error(cli(args, cwd=tmp_cwd))
    assert ("model.depth=14 is not allowed: model.depth belongs to model=resnet, and this sweep also runs another "
            "model (swept on the command line or by the preset); add model=resnet to run that one only") in line
    # Hydra made multirun/<date>/multirun.yaml before it composed the jobs: nothing ran, so it is gone
    assert list(tmp_cwd.iterdir()) == []
    (tmp_cwd / "multirun" / "earlier").mkdir(parents=True)  # another sweep's directory stays
    one_line_error(cli(args, cwd=tmp_cwd))
    assert [p.relative_to(tmp_cwd).as_posix() for p in tmp_cwd.rglob("*")] == ["multirun", "multirun/earlier"]


@pytest.mark.parametrize("overrides,needle", [
    (["optimizer.lrr=0.1"], "optimizer.lrr=0.1 is not allowed: did you mean optimizer.lr"),
    (["noise.hurst=0.7"], "noise.hurst=0.7 is not allowed: noise.hurst belongs to noise=gd_fbm (this run has noise=sgd)"),
    (["noise=gd_white", "noise.alpha=1.5"], "noise.alpha belongs to noise=gd_levy (this run has noise=gd_white)"),
    (["analysis.noise_stats.every=5"], "belongs to analysis=[noise_stats]"),
    (["trainer.steps=abc"], "trainer.steps='abc' is not allowed: Value 'abc' of type 'str' could not be converted"),
])
def test_composition_errors_become_one_line(overrides, needle):
    from hydra.errors import ConfigCompositionException

    from sgdexp.cli_checks import composition_error_line
    from sgdexp.config import compose_config, conf_dir

    with pytest.raises(ConfigCompositionException) as err:
        compose_config(overrides)
    line = composition_error_line(err.value, overrides, conf_dir())
    assert needle in line and "\n" not in line


def test_no_config_value_reaches_eval_exec_import_or_instantiate():
    root = Path(__file__).resolve().parents[1]
    code = "\n".join(p.read_text() for p in (root / "sgdexp").rglob("*.py"))
    for needle in ("instantiate(", "eval(", "exec(", "import_module(", "__import__(", "pickle.load("):
        # a call of the builtin, not a method (`model.eval()`) or `ast.literal_eval`
        assert not re.search(r"(?<![\w.])" + re.escape(needle), code), needle
    configs = [p for p in (root / "conf").rglob("*.yaml") if "hydra" not in p.relative_to(root / "conf").parts]
    assert configs and not [p for p in configs if "_target_" in p.read_text()]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_end_the_run_as_interrupted_at_the_step_reached(tmp_path, sig, code):
    # SIGTERM used to end Python where it stood (no summary, the run looked alive); Ctrl-C recorded step 0
    # and printed a traceback. Both now: summary interrupted at the step reached, the checkpoint's step,
    # the last line saying how to continue, the shell's exit code, and a resume that finishes the run
    from conftest import FAST

    run = tmp_path / "run"
    args = [*FAST, "trainer.steps=1000000", "trainer.checkpoint_every=200", "trainer.log_every=50",
            f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, "-m", "sgdexp", *args], cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"})
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = communicate_or_dump(proc, timeout=120)
    assert proc.returncode == code and "Traceback" not in out + err, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] >= 200
    assert summary["step"] >= summary["checkpoint_step"] and summary["step"] % 50 == 0
    assert (f"interrupted at step {summary['step']}" in err + out
            and f"from its checkpoint at step {summary['checkpoint_step']}" in err + out)
    assert not (run / LOCK).exists()
    steps = summary["checkpoint_step"] + 100
    assert train_run(run, ["trainer.steps=%d" % steps, "trainer.checkpoint_every=200", "trainer.log_every=50",
                           "trainer.resume=true"])["status"] == "completed"


def test_an_escape_runs_checkpoint_as_init_from_is_named(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = tmp_path / "last.pt"
    torch.save({"chunk": 0, "step": 10, "params": {"theta": torch.zeros(3, 2)}}, path)
    with pytest.raises(ConfigError, match=r"a task=train run's checkpoint \(this one is task=escape's"):
        load_checkpoint_checked(path, model, key="task.init_from")
