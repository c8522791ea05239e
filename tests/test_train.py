"""The training task: deterministic, resumable, stops cleanly when it diverges, logs everywhere."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import kill_after_checkpoint, make_cfg, train_run
from sgdexp.tasks import run_task
from sgdexp.tracking import read_metrics

SHORT = ["trainer.steps=60", "trainer.eval_every=20", "trainer.log_every=10", "trainer.checkpoint_every=30"]


def metrics(out_dir: Path):
    return read_metrics(Path(out_dir) / "metrics.jsonl")


def test_default_study_learns_digits(tmp_path):
    summary = train_run(tmp_path, ["trainer.steps=300", "trainer.eval_every=100"])
    assert summary["status"] == "completed" and summary["step"] == 300
    assert summary["test/accuracy"] >= 0.9
    rows = metrics(tmp_path)
    assert rows[0]["step"] == 0 and "test/loss" in rows[0]
    assert [r["step"] for r in rows if "test/loss" in r] == [0, 100, 200, 300]
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    assert set(summary) >= {"status", "train/loss", "train/accuracy", "test/loss", "test/accuracy", "wall_time_s", "steps"}


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    runs = [metrics(tmp_path / name) for name in ("a", "b", "c") if
            train_run(tmp_path / name, SHORT + (["seed=1"] if name == "c" else []))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("noise", ["noise=sgd", "noise=gd", "noise.sampler=replacement"])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, noise):
    overrides = SHORT + [noise, "optimizer.momentum=0.9", "trainer.lr_schedule=cosine"]
    train_run(tmp_path / "full", overrides)

    # Killed at the step-60 checkpoint: the last checkpoint is step 30, rows up to 60 are logged.
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=30)
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["status"] == "interrupted"
    assert max(r["step"] for r in metrics(tmp_path / "killed")) == 60  # logged past the checkpoint

    summary = train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    assert summary["status"] == "completed"
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "full")
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_checkpoint_holds_no_storage_beyond_its_tensors(tmp_path):
    # torch.save writes a view's whole storage: diffusion's last record, a row of its 65-row block,
    # once put the block (1 MB of the MLP's) into every checkpoint
    train_run(tmp_path, SHORT + ["analysis=[diffusion,curvature,generalization]"])
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)

    def tensors(x):
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, dict):
            yield from (t for v in x.values() for t in tensors(v))
        elif isinstance(x, (list, tuple)):
            yield from (t for v in x for t in tensors(v))

    found = list(tensors(state["analyses"]["diffusion"]))
    assert len(found) >= 5
    for t in tensors(state):
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    summary = train_run(tmp_path, SHORT + ["trainer.resume=true"])
    assert summary["status"] == "completed" and metrics(tmp_path)[0]["step"] == 0
    assert summary["evaluated_step"] == summary["step"] == 60


def test_divergence_stops_cleanly_and_keeps_measurements(tmp_path):
    summary = train_run(tmp_path, SHORT + ["optimizer.lr=1e6", "trainer.steps=200"])
    assert summary["status"] == "diverged"
    assert 0 < summary["diverged_step"] < 200
    rows = metrics(tmp_path)
    assert rows[0]["step"] == 0 and rows[0]["test/loss"] > 0  # the measurement before divergence is kept
    assert rows[-1] == {"step": summary["diverged_step"], "diverged": 1}
    # its final metrics are the last evaluation's, and the summary says at which step that was
    evaluated = [r for r in rows if "test/loss" in r][-1]
    assert summary["evaluated_step"] == evaluated["step"] < summary["diverged_step"]
    assert summary["test/loss"] == evaluated["test/loss"]


def test_step_and_cosine_schedules(tmp_path):
    train_run(tmp_path / "step", SHORT + ["trainer.lr_schedule=step", "trainer.lr_milestones=[20,40]"])
    lrs = {r["step"]: r["lr"] for r in metrics(tmp_path / "step") if "lr" in r}
    assert lrs[10] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[50] == pytest.approx(0.001)
    train_run(tmp_path / "cos", SHORT + ["trainer.lr_schedule=cosine", "trainer.warmup_steps=10"])
    lrs = {r["step"]: r["lr"] for r in metrics(tmp_path / "cos") if "lr" in r}
    assert lrs[10] == pytest.approx(0.1)  # the last warm-up update
    assert lrs[20] == pytest.approx(0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 9 / 50)).item()))
    assert lrs[60] < 0.002


def test_a_schedule_reads_its_config_once():
    """`factor` runs at every step of a scheduled run: it holds plain values taken when it was built, not
    the config (through curvature's interpolated copy a read cost ~0.3 ms: a preset's window of 50000
    steps took 14 s to average its rate)."""
    from omegaconf import OmegaConf

    from sgdexp.schedules import lr_factor_fn

    trainer = OmegaConf.create({"steps": 100, "warmup_steps": 0, "lr_schedule": "step", "lr_milestones": [20],
                                "lr_gamma": 0.5})
    factor = lr_factor_fn(trainer)
    before = [factor(s) for s in (0, 19, 20, 99)]
    assert before == [1.0, 1.0, 0.5, 0.5]
    trainer.lr_schedule, trainer.lr_gamma = "cosine", 0.1  # a later change of the config is not read
    assert [factor(s) for s in (0, 19, 20, 99)] == before


def test_regression_dataset_and_other_models_train(tmp_path):
    s = train_run(tmp_path / "ts", SHORT + ["dataset=teacher_student", "model=linear"])
    assert s["status"] == "completed" and "test/accuracy" not in s and s["test/loss"] < 1.0
    s = train_run(tmp_path / "cnn", SHORT + ["model=cnn", "optimizer=adam"])
    assert s["status"] == "completed" and s["test/accuracy"] > 0.5


def test_gd_is_full_batch(tmp_path):
    summary = train_run(tmp_path, SHORT + ["noise=gd"])
    rows = [r for r in metrics(tmp_path) if "train/batch_loss" in r and "train/loss" in r]
    # GD's step loss is the full training loss at the weights before the step: it decreases monotonically
    batch = [r["train/batch_loss"] for r in metrics(tmp_path) if "train/batch_loss" in r]
    assert all(b1 > b2 for b1, b2 in zip(batch, batch[1:]))
    assert summary["status"] == "completed" and rows


def test_wandb_offline_run_lives_in_output_dir(tmp_path, tmp_cwd):
    out = tmp_path / "run"
    from sgdexp.tasks import run_task

    run_task(make_cfg(SHORT + ["logger=wandb", "logger.mode=offline"]), out, group="sweep-x")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and not (tmp_cwd / "wandb").exists()
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_wandb_failure_never_kills_a_run(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("no service")

    monkeypatch.setattr(wandb, "init", broken_init)
    summary = train_run(tmp_path, SHORT + ["logger=wandb"])
    assert summary["status"] == "completed"
    assert sum("W&B init failed" in r.message for r in caplog.records) == 1


def test_batch_larger_than_dataset_writes_nothing(tmp_path):
    from sgdexp.errors import ConfigError

    with pytest.raises(ConfigError, match="noise.batch_size=100"):
        run_task(make_cfg(SHORT + ["dataset.subset=50", "noise.batch_size=100"]), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_wandb_gets_resolved_config_group_scalars_and_status(tmp_path, monkeypatch):
    import wandb

    calls = {}

    class FakeRun:
        summary: dict = {}
        id = "fake0001"

        def log(self, row, step):
            calls.setdefault("log", []).append((step, row))

        def log_artifact(self, artifact):
            calls["artifact"] = artifact

        def finish(self, exit_code=0):
            calls["exit_code"] = exit_code

    def fake_init(**kwargs):
        calls["init"] = kwargs
        FakeRun.summary = {}
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    run_task(make_cfg(SHORT + ["logger=wandb"]), tmp_path, group="2026-01-01_00-00-00")
    init = calls["init"]
    assert init["group"] == "2026-01-01_00-00-00" and init["dir"] == str(tmp_path) and init["mode"] == "offline"
    assert init["config"]["optimizer"]["lr"] == 0.1 and isinstance(init["config"], dict)
    logged = dict(calls["log"])
    local = {r["step"]: r for r in metrics(tmp_path)}
    assert set(logged) == set(local) and logged[60]["test/loss"] == local[60]["test/loss"]
    assert "step" not in logged[60]
    assert FakeRun.summary["status"] == "completed" and calls["exit_code"] == 0
    assert calls["artifact"].type == "model" and calls["artifact"].name.startswith("checkpoint-fake0001")


def test_wandb_key_never_lands_in_outputs(tmp_path, tmp_cwd, monkeypatch):
    secret = "f00dfeed" * 5  # the shape of a W&B API key
    monkeypatch.setenv("WANDB_API_KEY", secret)
    out = tmp_path / "run"
    run_task(make_cfg(SHORT + ["logger=wandb", "logger.mode=offline"]), out)
    leaked = [p for p in out.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked


def test_the_heap_before_a_run_is_frozen_out_of_garbage_collection_during_it(tmp_path, monkeypatch):
    # what existed before the run is out of the collector's walks while it runs (a full collection
    # of it costs 0.1-0.25 s at a random step), and back in them after, also when the run fails
    import gc

    import sgdexp.tasks.train as train_module

    frozen = []
    loop = train_module.Training.loop

    def watched(self):
        frozen.append(gc.get_freeze_count())
        return loop(self)

    monkeypatch.setattr(train_module.Training, "loop", watched)
    before = len(gc.get_objects())
    train_run(tmp_path / "ok", SHORT)
    assert frozen and frozen[0] >= before // 2 and gc.get_freeze_count() == 0

    def fail(self):
        frozen.append(gc.get_freeze_count())
        raise RuntimeError("boom")

    monkeypatch.setattr(train_module.Training, "loop", fail)
    with pytest.raises(RuntimeError, match="boom"):
        train_run(tmp_path / "failed", SHORT)
    assert frozen[1] > 0 and gc.get_freeze_count() == 0


def test_stop_at_train_loss_ends_the_run_at_the_first_evaluation_below_it(tmp_path):
    """Runs compared at equal fit (Jiang et al. 2020 stop at cross-entropy 0.01): the run ends at the
    first evaluation whose train loss is at most the target, its analyses take their end-of-run
    measurements there, and a resume of it trains no further."""
    train_run(tmp_path / "full", ["trainer.steps=300", "trainer.eval_every=10"])
    full = {r["step"]: r["train/loss"] for r in metrics(tmp_path / "full") if "train/loss" in r}
    target = 0.3
    first = min(step for step, loss in full.items() if loss <= target)
    assert 0 < first < 300 and full[first - 10] > target

    overrides = ["trainer.steps=300", "trainer.eval_every=10", "trainer.stop_at_train_loss=0.3",
                 "analysis=[diffusion,curvature,generalization]", "analysis.diffusion.waiting_times=[0]"]
    summary = train_run(tmp_path / "stop", overrides)
    assert summary["status"] == "completed" and summary["step"] == summary["stopped_at_step"] == first
    assert summary["steps"] == 300 and summary["train/loss"] == full[first]  # the same trajectory up to the stop
    rows = metrics(tmp_path / "stop")
    assert max(r["step"] for r in rows) == first
    metrics_at = {k: v for r in rows if r["step"] == first for k, v in r.items()}
    # the end-of-run measurements: the Hessian, sharpness (curvature's, measured once), the diffusion fits
    assert metrics_at["generalization/top_eigenvalue"] == metrics_at["curvature/top_eigenvalue"]
    assert "diffusion/gamma_early" in metrics_at and "diffusion/window_gamma" in metrics_at
    state = torch.load(tmp_path / "stop" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == first and state["stopped"]

    resumed = train_run(tmp_path / "stop", overrides + ["trainer.resume=true"])
    assert resumed["step"] == resumed["stopped_at_step"] == first and metrics(tmp_path / "stop") == rows
    assert same_record(resumed, summary)


def test_stop_at_train_accuracy_ends_the_run_at_the_first_evaluation_above_it(tmp_path):
    """Keskar et al.'s equal fit (train accuracy): the run ends at the first evaluation whose train
    accuracy is at least the target; with a loss target too, at whichever comes first; summary.json
    and the resumed checkpoint name the rule."""
    train_run(tmp_path / "full", ["trainer.steps=300", "trainer.eval_every=10"])
    full = {r["step"]: (r["train/loss"], r["train/accuracy"]) for r in metrics(tmp_path / "full") if "train/loss" in r}
    accuracy, loss = 0.95, 0.1
    first_accuracy = min(step for step, (_, acc) in full.items() if acc >= accuracy)
    first_loss = min(step for step, (l, _) in full.items() if l <= loss)
    assert 0 < first_accuracy < first_loss < 300  # the accuracy target is met first here

    overrides = ["trainer.steps=300", "trainer.eval_every=10", f"trainer.stop_at_train_accuracy={accuracy}",
                 "analysis=[generalization]"]
    summary = train_run(tmp_path / "acc", overrides)
    assert summary["step"] == summary["stopped_at_step"] == first_accuracy
    assert summary["stopped_by"] == "trainer.stop_at_train_accuracy" and summary["train/accuracy"] >= accuracy
    assert "generalization/top_eigenvalue" in summary  # the end-of-run measurements, at the stop
    resumed = train_run(tmp_path / "acc", overrides + ["trainer.resume=true"])
    assert same_record(resumed, summary)

    both = train_run(tmp_path / "both", ["trainer.steps=300", "trainer.eval_every=10", f"trainer.stop_at_train_loss={loss}",
                                         f"trainer.stop_at_train_accuracy={accuracy}"])
    assert both["stopped_at_step"] == first_accuracy and both["stopped_by"] == "trainer.stop_at_train_accuracy"
    loss_only = train_run(tmp_path / "loss", ["trainer.steps=300", "trainer.eval_every=10", f"trainer.stop_at_train_loss={loss}"])
    assert loss_only["stopped_at_step"] == first_loss and loss_only["stopped_by"] == "trainer.stop_at_train_loss"


def same_record(a: dict, b: dict) -> bool:
    """Two summaries of one run agree on everything but the timings."""
    timing = ("wall_time_s", "analysis_time_s/", "analysis_cost/")
    return {k: v for k, v in a.items() if not k.startswith(timing)} == {k: v for k, v in b.items() if not k.startswith(timing)}


def test_resuming_a_finished_run_keeps_its_summary(tmp_path):
    """Resuming a run that already reached trainer.steps takes no step and rewrites summary.json with
    the same final metrics (it once lost train/test loss and accuracy there)."""
    overrides = SHORT + ["analysis=[generalization]"]
    first = train_run(tmp_path, overrides)
    again = train_run(tmp_path, overrides + ["trainer.resume=true"])
    assert "train/loss" in again and same_record(again, first)


def test_stop_at_train_loss_needs_evaluations(tmp_path):
    from sgdexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_loss.*trainer.eval_every > 0"):
        train_run(tmp_path, SHORT + ["trainer.stop_at_train_loss=0.01", "trainer.eval_every=0"])
    assert not any(tmp_path.iterdir())  # stopped before anything was written
    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_accuracy=0.9 is not allowed: null unless trainer.eval_every > 0"):
        train_run(tmp_path, SHORT + ["trainer.stop_at_train_accuracy=0.9", "trainer.eval_every=0"])
    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_accuracy=0.9 is not allowed: null for "
                                          r"dataset=linear_gaussian \(a regression task has no accuracy\)"):
        train_run(tmp_path, ["dataset=linear_gaussian", "model=linear", "trainer.stop_at_train_accuracy=0.9"])
    assert not any(tmp_path.iterdir())
    from sgdexp.config import validate

    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_loss"):
        validate(make_cfg(["trainer.stop_at_train_loss=-1"]))
    with pytest.raises(ConfigError, match=r"trainer.stop_at_train_accuracy=1.5 is not allowed: must be > 0.0 and <= 1.0"):
        validate(make_cfg(["trainer.stop_at_train_accuracy=1.5"]))


def test_an_interrupt_while_figures_are_drawn_keeps_the_summary(tmp_path, monkeypatch):
    # Ctrl-C during the end's figures (a second of matplotlib) skipped summary.json: the run looked unfinished
    import sgdexp.tasks.train as train_module

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Training, "log_figures", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_task(make_cfg(SHORT + ["trainer.figures=true"]), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == summary["steps"]


def test_the_summary_is_on_disk_before_the_figures_are_drawn(tmp_path, monkeypatch):
    # A process killed while drawing (submitit's local controller sends SIGKILL 1 s after its SIGINT, and a
    # run with diffusion and curvature draws for longer) lost summary.json: it was written after the figures
    import sgdexp.tasks.train as train_module

    seen = []
    real = train_module.Training.log_figures

    def drawing(self):
        path = tmp_path / "run" / "summary.json"
        seen.append(json.loads(path.read_text()) if path.exists() else None)
        real(self)

    monkeypatch.setattr(train_module.Training, "log_figures", drawing)
    final = train_run(tmp_path / "run", SHORT + ["trainer.figures=true"])
    assert seen == [final] and final["status"] == "completed"
    assert (tmp_path / "run" / "figures" / "training.png").exists()


def test_a_schedule_point_past_the_run_is_said(tmp_path, caplog):
    # warmup_steps or a milestone past trainer.steps did nothing, without a word
    caplog.set_level("WARNING", logger="sgdexp.tasks.train")
    train_run(tmp_path / "run", SHORT + ["trainer.lr_schedule=step", "trainer.lr_milestones=[30,500]",
                                         "trainer.warmup_steps=100"])
    said = [r.getMessage() for r in caplog.records if "not reached in this run" in r.getMessage()]
    assert said == ["trainer.warmup_steps=100, trainer.lr_milestones has 500: past trainer.steps=60, so not reached "
                    "in this run"]
