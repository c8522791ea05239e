"""task=escape: escape times against Kramers, fGn ordering, batched = looped, resume, outputs, bad input."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from sgdexp.errors import ConfigError
from sgdexp.models.landscapes import kramers_steps
from sgdexp.tasks import run_task
from conftest import cli, make_cfg, train_run

WELL = ["task=escape", "landscape=double_well", "landscape.barrier=1", "optimizer.lr=0.02",
        "task.criterion=transition", "trainer.log_every=1000", "task.sharpness_probes=0"]


def escape_run(out_dir: Path, overrides) -> dict:
    run_task(make_cfg(overrides), Path(out_dir))
    return json.loads((Path(out_dir) / "summary.json").read_text())


def read_csv(out_dir: Path):
    with open(Path(out_dir) / "escape.csv") as f:
        return list(csv.DictReader(f))


def white_sigma(lr: float, ratio: float, barrier: float = 1.0) -> float:
    """σ with ΔL/T = ratio, T = ησ²/2."""
    return math.sqrt(2.0 * barrier / (lr * ratio))


@pytest.mark.parametrize("ratio", [3, 4, 5])  # 1-3 s each on 2 idle cores
def test_double_well_white_noise_matches_kramers(tmp_path, ratio):
    # η U''min = 0.16: the discrete-time excess over Kramers measured 8-9% at ΔL/T = 3 and 5.
    # 400 replicas put the exponential MLE's 95% interval at about ±10%, inside the 20% tolerance.
    sigma = white_sigma(0.02, ratio)
    expected = kramers_steps(1.0, 0.02, sigma)
    s = escape_run(tmp_path, WELL + ["noise=gd_white", f"noise.sigma={sigma}", "task.replicas=400",
                                     f"task.max_steps={int(2 * expected)}", "task.check_every=5"])
    assert s["escape/replicas"] == 400 and s["escape/escaped"] > 300
    assert abs(s["escape/mean_steps"] / expected - 1) < 0.2
    assert (s["escape/mean_steps_high"] - s["escape/mean_steps_low"]) / 2 < 0.2 * expected
    assert s["escape/mean_steps_low"] < s["escape/mean_steps"] < s["escape/mean_steps_high"]


def test_fbm_escape_times_ordered_in_hurst(tmp_path):
    # Same σ and unit-variance fGn: the same injected power. Persistent noise (H > 1/2) drifts out
    # sooner; anti-persistent noise (H < 1/2) cancels itself and stays in.
    times = {}
    for hurst in (0.3, 0.5, 0.7):
        s = escape_run(tmp_path / str(hurst), WELL + ["noise=gd_fbm", f"noise.hurst={hurst}", "noise.sigma=5.7735",
                                                       "task.replicas=150", "task.max_steps=3000", "task.check_every=5"])
        times[hurst] = s["escape/mean_steps"] if s["escape/escaped"] else s["escape/mean_steps_low"]  # a lower bound
    assert times[0.3] > 1.5 * times[0.5] and times[0.5] > 1.5 * times[0.7]


def test_batched_equals_looped(tmp_path):
    common = WELL + ["noise=gd_white", "noise.sigma=8.2", "task.replicas=6", "task.max_steps=600",
                     "optimizer.momentum=0.5"]
    escape_run(tmp_path / "batched", common)
    escape_run(tmp_path / "looped", common + ["task.replica_chunk=1"])
    escape_run(tmp_path / "chunked", common + ["task.replica_chunk=4"])
    steps = [[r["step"] for r in read_csv(tmp_path / d)] for d in ("batched", "looped", "chunked")]
    assert steps[0] == steps[1] == steps[2]
    assert len(set(steps[0])) > 3  # replicas are independent, not copies


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained MLP on teacher_student, the data-driven toy (a real minimum with label noise)."""
    out = tmp_path_factory.mktemp("trained")
    train_run(out, TOY + ["noise=gd", "trainer.steps=60", "optimizer.lr=0.3"])
    return out


TOY = ["dataset=teacher_student", "dataset.n_train=256", "dataset.n_test=64", "dataset.dim=8",
       "model=mlp", "model.widths=[16]", "model.activation=tanh", "noise.batch_size=16"]


SLOW = pytest.mark.slow


@pytest.mark.parametrize("mode", ["sgd", pytest.param("sgd_replacement", marks=SLOW), pytest.param("gd", marks=SLOW),
                                  pytest.param("gd_white", marks=SLOW), pytest.param("gd_fbm", marks=SLOW),
                                  pytest.param("gd_levy", marks=SLOW), pytest.param("gd_sgdcov", marks=SLOW),
                                  pytest.param("gd_anticorrelated", marks=SLOW)])
def test_every_noise_mode_escapes_from_a_trained_network(tmp_path, trained, mode):
    noise = ["noise=sgd", "noise.sampler=replacement"] if mode == "sgd_replacement" else [f"noise={mode}"]
    s = escape_run(tmp_path, TOY + noise + [
        "task=escape", f"task.init_from={trained}", "task.criterion=distance", "task.radius=0.3",
        "task.replicas=6", "task.replica_chunk=4", "task.max_steps=60", "task.check_every=2", "optimizer.lr=0.5",
        "task.tail_batches=64", "task.sharpness_probes=8"])
    rows = read_csv(tmp_path)
    assert len(rows) == 6 and s["escape/replicas"] == 6
    assert {"share/1.weight", "share/3.bias", "alpha/1.weight"} <= set(rows[0])
    shares = [float(rows[0][k]) for k in rows[0] if k.startswith("share/")]
    assert abs(sum(shares) - 1) < 1e-4
    assert s["sharpness/top_eigenvalue"] > 0 and "escape/tail_index/1.weight" in s
    if mode == "gd":
        assert len({r["step"] for r in rows}) == 1  # no noise: every replica takes the same path
    else:
        assert len({r["distance"] for r in rows}) == 6  # each replica its own noise
    if mode != "gd":
        assert s["escape/sigma"] is None if mode.startswith("sgd") else s["escape/sigma"] > 0
    assert (tmp_path / "figures" / "escape_survival.png").is_file()


@pytest.mark.slow
def test_pretrain_then_escape_in_one_run(tmp_path):
    s = escape_run(tmp_path, TOY + ["task=escape", "task.pretrain_steps=40", "noise=sgd", "optimizer.lr=0.3",
                                    "task.criterion=loss", "task.loss_barrier=0.05", "task.replicas=8",
                                    "task.max_steps=50", "task.tail_batches=0", "task.sharpness_probes=0"])
    assert (tmp_path / "pretrain" / "summary.json").is_file()
    assert s["status"] == "completed" and s["escape/replicas"] == 8


def test_resume_after_kill_continues_every_replica_exactly(tmp_path, monkeypatch):
    from sgdexp.tasks import escape as escape_module

    common = WELL + ["noise=gd_fbm", "noise.hurst=0.7", "noise.sigma=4", "optimizer.momentum=0.3",
                     "task.replicas=10", "task.replica_chunk=4", "task.max_steps=800", "trainer.checkpoint_every=100"]
    escape_run(tmp_path / "whole", common)
    real = escape_module.Escape.checkpoint
    calls = []

    def dying(self, chunk, step, *args):
        calls.append((chunk, step))
        if chunk == 1 and step == 300:
            raise KeyboardInterrupt("killed")
        real(self, chunk, step, *args)

    with monkeypatch.context() as patch:
        patch.setattr(escape_module.Escape, "checkpoint", dying)
        with pytest.raises(KeyboardInterrupt):
            escape_run(tmp_path / "killed", common)
    assert (1, 300) in calls
    killed = json.loads((tmp_path / "killed" / "summary.json").read_text())  # where it stopped, and its checkpoint
    assert (killed["status"], killed["checkpoint_step"]) == ("interrupted", 800 + 200)
    assert killed["step"] >= killed["checkpoint_step"]
    escape_run(tmp_path / "killed", common + ["trainer.resume=true"])
    assert read_csv(tmp_path / "killed") == read_csv(tmp_path / "whole")


def test_all_censored_reports_a_lower_bound(tmp_path):
    s = escape_run(tmp_path, WELL + ["noise=gd_white", "noise.sigma=0.4", "task.replicas=20", "task.max_steps=200"])
    assert s["escape/escaped"] == 0 and s["escape/censored"] == 20
    assert s["escape/lower_bound"] == 1.0 and s["escape/mean_steps_low"] > 200  # at least: never a measured-looking mean
    assert s.get("escape/mean_steps") is None or not math.isfinite(s["escape/mean_steps"])


@pytest.mark.parametrize("overrides, key", [
    (["task.replicas=0"], "task.replicas"),
    (["task.replicas=-3"], "task.replicas"),
    (["task.criterion=sideways"], "task.criterion"),
    (["landscape=none", "task.init_from=/nonexistent/run"], "task.init_from"),
    (["noise=sgd"], "noise"),
    (["noise=gd_sgdcov", "noise.sigma=1"], "noise"),
    (["noise=gd_white", "noise.sigma=matched"], "noise.sigma"),
    (["landscape=quadratic", "noise=gd_white", "noise.sigma=1"], "task.criterion"),
    (["landscape=none", "noise=gd_white", "noise.sigma=1"], "task.init_from"),
    (["analysis=[diffusion]"], "analysis"),  # escape runs no analyses: refused rather than ignored
    (["landscape=none", "task.pretrain_steps=10", "analysis=[curvature,generalization]"], "analysis"),
])
def test_bad_input_is_one_error_and_nothing_written(tmp_path, overrides, key):
    out = tmp_path / "run"
    base = ["task=escape", "landscape=double_well", "task.criterion=transition"]
    if not any(o.startswith("noise=") for o in overrides):
        base += ["noise=gd_white", "noise.sigma=1"]
    with pytest.raises(ConfigError) as err:
        run_task(make_cfg(base + overrides), out)
    assert err.value.key == key and "\n" not in str(err.value)
    assert not out.exists()


def test_a_landscape_with_task_train_is_refused(tmp_path):
    # a landscape is escape's loss: task=train trained the MLP on digits without a word
    with pytest.raises(ConfigError) as err:
        run_task(make_cfg(["landscape=quadratic"]), tmp_path / "run")
    assert err.value.key == "landscape" and "add task=escape" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_mismatched_init_from_is_one_error(tmp_path, trained):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run_task(make_cfg(TOY + ["model.widths=[32]", "task=escape", f"task.init_from={trained}"]), out)
    assert err.value.key == "task.init_from" and "differs in model.widths: " in str(err.value)
    assert "there, [32] here" in str(err.value)  # the key and both values, not the whole config
    assert not out.exists()


def test_cli_error_is_one_line(tmp_path):
    r = cli(["task=escape", "landscape=double_well", "noise=sgd", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["sgdexp: error: noise='sgd' is not allowed: gd, gd_white, gd_fbm, "
                                             "gd_levy or gd_anticorrelated: landscape=double_well has no samples"]
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_batched_equals_looped_on_a_network_with_sgd(tmp_path, trained):
    common = TOY + ["noise=sgd", "task=escape", f"task.init_from={trained}", "task.criterion=distance",
                    "task.radius=0.3", "task.replicas=6", "task.max_steps=200", "optimizer.lr=0.5",
                    "task.tail_batches=0", "task.sharpness_probes=0"]
    escape_run(tmp_path / "batched", common)
    escape_run(tmp_path / "looped", common + ["task.replica_chunk=1"])
    batched, looped = read_csv(tmp_path / "batched"), read_csv(tmp_path / "looped")
    # the escape steps exactly; the losses at exit up to float32 rounding (a batched matmul sums in
    # another order than the same product for one replica)
    assert [(r["replica"], r["escaped"], r["step"]) for r in batched] == [(r["replica"], r["escaped"], r["step"]) for r in looped]
    for b, l in zip(batched, looped):
        assert all(math.isclose(float(b[k]), float(l[k]), rel_tol=1e-6) for k in b), (b, l)


def test_pretraining_that_diverges_is_a_one_line_error_naming_its_lr(tmp_path):
    overrides = ["task=escape", "dataset=teacher_student", "dataset.n_train=64", "dataset.n_test=16", "model.widths=[8]",
                 "task.pretrain_steps=300", "task.pretrain_lr=50", "optimizer.lr=0.1", "task.max_steps=5",
                 "task.replicas=2", "task.sharpness_probes=0", "task.tail_batches=0", "noise=gd_white", "noise.sigma=0.1"]
    with pytest.raises(ConfigError, match=r"task.pretrain_lr=50(\.0)? is not allowed: a smaller one \(the pretraining GD diverged"):
        escape_run(tmp_path, overrides)
    assert not (tmp_path / "escape.csv").exists() and (tmp_path / "pretrain" / "summary.json").exists()


def test_a_shared_pretraining_that_diverged_is_not_run_again(tmp_path):
    # a multirun shares one pretraining (<sweep>/.pretrain/<key>); once it diverged, a job that
    # reaches it (the sweep's second job, and the sweep run again into the same directory) fails with
    # the same one line at once, from its record; the sweep's last line names both refused jobs
    args = ["-m", "task=escape", "dataset=teacher_student", "dataset.n_train=64", "dataset.n_test=16", "model.widths=[8]",
            "task.pretrain_steps=300", "task.pretrain_lr=50", "optimizer.lr=0.1", "task.max_steps=5", "task.replicas=2",
            "task.sharpness_probes=0", "task.tail_batches=0", "noise=gd_white", "noise.sigma=0.1,0.2",
            "hydra.sweep.dir=sweep", "logger=none", "device=cpu", "trainer.progress=false"]
    first, again = cli(args, cwd=tmp_path), cli(args, cwd=tmp_path)
    shared = [p for p in (tmp_path / "sweep" / ".pretrain").iterdir() if p.is_dir()]
    assert len(shared) == 1
    for proc, ran in ((first, 1), (again, 0)):
        assert proc.returncode == 2
        assert (proc.stdout + proc.stderr).count("the run diverged") == ran
        errors = [l for l in proc.stderr.splitlines() if l.startswith("sgdexp: error:")]
        assert len(errors) == 3 and errors[-1].startswith("sgdexp: error: all 2 jobs of the sweep were refused: job 0 ") \
            and "; job 1 " in errors[-1]
        assert all("task.pretrain_lr=50.0 is not allowed" in e and str(shared[0].name) in e for e in errors)


def test_the_budgets_last_step_is_checked_and_diverged_replicas_are_said_apart(tmp_path, caplog):
    # max_steps not a multiple of check_every: the last step went unchecked, so replicas out there
    # were censored; blown-up replicas (η λ_max > 2) counted as escapes without a word
    base = ["task=escape", "landscape=double_well", "noise=gd_white", "noise.sigma=7", "optimizer.lr=0.02",
            "task.criterion=saddle", "task.replicas=64", "task.max_steps=50"]
    counts = [escape_run(tmp_path / str(every), base + [f"task.check_every={every}"])["escape/escaped"]
              for every in (50, 100)]
    assert counts[0] == counts[1] > 0
    caplog.set_level("WARNING", logger="sgdexp.tasks.escape")
    run_task(make_cfg(["task=escape", "landscape=double_well", "noise=gd_white", "noise.sigma=0.01",
                       "optimizer.lr=1.0", "task.criterion=distance", "task.radius=1e30", "task.replicas=3",
                       "task.max_steps=300"]), tmp_path / "c")
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["escape/diverged"] == 3 and summary["escape/escaped"] == 3
    assert (tmp_path / "c" / "escape.csv").read_text().splitlines()[1].endswith(",1")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "past the stability bound" in said and "3 of 3 replicas diverged" in said
