"""analysis=[diffusion] in training: projected against exact, training untouched, resume exact."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import kill_after_checkpoint, make_cfg, train_run
from sgdexp.analysis.diffusion import Diffusion
from sgdexp.config import validate
from sgdexp.errors import ConfigError
from sgdexp.stats import msd
from sgdexp.tracking import read_metrics

SMALL = ["model.widths=[32]", "dataset.subset=512", "trainer.eval_every=100", "trainer.log_every=20",
         "analysis=[diffusion]", "analysis.diffusion.log_every=50", "analysis.diffusion.buffer=64",
         "analysis.diffusion.waiting_times=[0,50]", "analysis.diffusion.lags=12"]


def last_arrays(run_dir) -> dict:
    rows = [json.loads(l) for l in (run_dir / "arrays.jsonl").read_text().splitlines()]
    return {k: np.array(v) for k, v in rows[-1].items() if k != "step"}


def test_projected_msd_agrees_with_exact(tmp_path):
    # 2410 parameters: stored exactly with dims=4096, projected to 2039 numbers (the largest prime
    # <= 2048) with dims=2048
    steps = ["trainer.steps=200", "trainer.checkpoint_every=0"]
    exact = train_run(tmp_path / "exact", SMALL + steps + ["analysis.diffusion.dims=4096"])
    projected = train_run(tmp_path / "projected", SMALL + steps + ["analysis.diffusion.dims=2048"])
    assert exact["diffusion/projected"] == 0 and exact["diffusion/dims"] == 2410
    assert projected["diffusion/projected"] == 1 and projected["diffusion/dims"] == 2039
    a, b = last_arrays(tmp_path / "exact"), last_arrays(tmp_path / "projected")
    for key in ("diffusion/tw0/msd", "diffusion/tw50/msd", "diffusion/window_msd"):
        np.testing.assert_allclose(b[key], a[key], rtol=0.05, err_msg=key)
    # exact recording: the distance from init is ‖θ_T − θ_0‖² itself
    assert exact["diffusion/distance_sq"] == pytest.approx(a["diffusion/tw0/msd"][-1], rel=1e-9)
    assert exact["diffusion/path_length"] >= np.sqrt(exact["diffusion/distance_sq"])


def test_diffusion_leaves_training_unchanged_and_resumes_exactly(tmp_path, monkeypatch):
    base = ["model.widths=[32]", "dataset.subset=512", "trainer.steps=120", "trainer.eval_every=40",
            "trainer.log_every=20", "trainer.checkpoint_every=60"]
    overrides = SMALL[:1] + base[1:] + SMALL[4:] + ["analysis.diffusion.dims=1024", "analysis.diffusion.every=2",
                                                    "analysis.diffusion.buffer=16",  # 61 records: windows of 16 complete
                                                    "analysis.diffusion.log_every=40"]  # logged rows as without it
    train_run(tmp_path / "plain", base)
    summary = train_run(tmp_path / "full", overrides + ["trainer.figures=true"])
    keep = ("train/", "test/", "lr", "epoch")
    strip = lambda rows: [{k: v for k, v in r.items() if k.startswith(keep)} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "plain" / "metrics.jsonl")) == strip(read_metrics(tmp_path / "full" / "metrics.jsonl"))
    for key in ("diffusion/distance_sq", "diffusion/path_length", "diffusion/window_gamma", "diffusion/tw0/gamma",
                "diffusion/tw0/gamma_local", "diffusion/gamma_early", "diffusion/gamma_late", "diffusion/crossover_step",
                "diffusion/tw50/gamma"):
        assert key in summary, key
    assert summary["diffusion/projected"] == 1
    assert (tmp_path / "full" / "figures" / "msd.png").stat().st_size > 10_000
    # killed after the step-60 checkpoint: window MSD, references and curves come back from it
    kill_after_checkpoint(tmp_path / "killed", overrides, monkeypatch, last_checkpoint=60)
    train_run(tmp_path / "killed", overrides + ["trainer.resume=true"])
    for name in ("metrics.jsonl", "arrays.jsonl"):
        assert read_metrics(tmp_path / "killed" / name) == read_metrics(tmp_path / "full" / name)


def recorded(analysis: Diffusion, walk: torch.Tensor) -> torch.Tensor:
    """The records of an 8-parameter trajectory `walk` (steps, 8): the weights themselves, or their
    signed fold (coordinate i with sign s_i into bucket i mod D; D = 3, the largest prime <= 4)."""
    if not analysis.projected:
        return walk.double()
    assert analysis.D == 3 and analysis.folds == 3
    padded = torch.zeros(len(walk), 9)
    padded[:, :8] = walk
    return (padded * analysis.sign).view(len(walk), 3, 3).sum(dim=1).double()


def diffusion_on(params, dims: int, steps: int, **overrides) -> Diffusion:
    """The analysis on the parameters `params`, measured when a test calls `compute`."""
    source = SimpleNamespace(dim=sum(p.numel() for p in params), params=params,
                             data=SimpleNamespace(x_train=torch.zeros(1)))
    cfg = OmegaConf.create({"name": "diffusion", "start": 0, "every": 1, "log_every": 1000, "dims": dims,
                            "buffer": 16, "waiting_times": [0], "lags": 5, **overrides})
    return Diffusion(cfg, source, None, seed=3, steps=steps)


def test_waiting_times_past_the_run_are_dropped_and_said(caplog):
    caplog.set_level("INFO")
    analysis = diffusion_on([torch.zeros(8)], 64, 200, every=7, waiting_times=[0, 199, 100, 180, 5000])
    # snapped to recorded steps (multiples of 7): 199 -> 203 and 5000 lie past step 200, and
    # 180 -> 182 leaves the lags 7 and 14 before it, too few for an exponent
    assert analysis.waiting == [0, 105] and all(len(lags) >= 3 for lags in analysis.lags)
    assert "waiting_times [199, 180, 5000] leave fewer than 3 recorded lags before the run's last step 200" \
        in caplog.text
    assert "move to the next recorded step (every 7 from step 0): 100 -> 105" in caplog.text


@pytest.mark.parametrize("dims", [64, 4])
@pytest.mark.parametrize("path", ["line", "walk", "back_and_forth"])
def test_persistence_tells_a_drift_from_a_random_walk(dims, path):
    # measurements at steps 10, 20, 30: the cosine of the moves between consecutive ones (the
    # origin before the first), from the second measurement on
    steps = 30
    params = [torch.zeros(3), torch.zeros(5)]
    analysis = diffusion_on(params, dims, steps, log_every=10)
    t = torch.arange(steps + 1, dtype=torch.float32)[:, None]
    direction = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))
    walk = {"line": t * direction,
            "walk": torch.randn(steps + 1, 8, generator=torch.Generator().manual_seed(4)).cumsum(0),
            "back_and_forth": torch.where((t // 10) % 2 == 1, 1.0, 0.0) * direction}[path]
    persistence = {}
    for step in range(steps + 1):
        params[0].copy_(walk[step, :3]), params[1].copy_(walk[step, 3:])
        analysis.record(step)
        if step and step % 10 == 0:
            persistence[step] = analysis.compute(step).scalars.get("diffusion/persistence")
    assert persistence[10] is None
    r = recorded(analysis, walk)
    for step in (20, 30):
        a, b = r[step - 10] - r[step - 20], r[step] - r[step - 10]
        assert persistence[step] == pytest.approx(float(a @ b / (a.norm() * b.norm())), rel=1e-5)
    expected = {"line": 1.0, "back_and_forth": -1.0}.get(path)
    if expected is not None:
        assert persistence[20] == pytest.approx(expected, abs=1e-5)
        assert persistence[30] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("a", [0.9, 0.5, 1.0])
def test_persistence_of_a_stationary_ar1_walk_is_its_known_value(a):
    # θ_{t+1} = a θ_t + ξ_t in 512 coordinates, stationary from the start, measured every 10 steps:
    # successive 10-step moves have correlation -(1 - a^10)/2 (autocovariance ∝ a^|s|), so the
    # persistence is -0.326 at a = 0.9, -0.4995 at a = 0.5 (a confined walk) and 0 at a = 1 (a free one)
    dim, lag, steps = 512, 10, 4000
    gen = torch.Generator().manual_seed(6)
    theta = torch.randn(dim, generator=gen) / (1 - a * a) ** 0.5 if a < 1 else torch.zeros(dim)
    params = [theta]
    analysis = diffusion_on(params, dims=1024, steps=steps, log_every=lag)
    noise = torch.randn(steps + 1, dim, generator=gen)
    persistence = []
    for step in range(steps + 1):
        if step:
            theta.mul_(a).add_(noise[step])
        analysis.record(step)
        if step and step % lag == 0:
            value = analysis.compute(step).scalars.get("diffusion/persistence")
            if value is not None:
                persistence.append(value)
    persistence = np.array(persistence)
    expected = -(1 - a ** lag) / 2
    # neighbours share a move, so count half as many independent values; 5 standard errors
    tolerance = 5 * persistence.std() / np.sqrt(len(persistence) / 2)
    assert tolerance < 0.02
    assert persistence.mean() == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize("dims", [64, 4])  # exact (3 + 5 parameters) and projected
def test_path_length_and_distance_follow_the_recorded_weights(dims):
    # a known trajectory, measured at steps 11 and 57 only, records staged and folded in blocks of up
    # to 64 and windows of 16 records: the path length is Σ‖θ_t − θ_{t−1}‖ of the records
    steps = 57
    params = [torch.zeros(3), torch.zeros(5)]
    analysis = diffusion_on(params, dims, steps)
    walk = torch.randn(steps + 1, 8, generator=torch.Generator().manual_seed(4)).cumsum(0)
    for step in range(steps + 1):
        params[0].copy_(walk[step, :3]), params[1].copy_(walk[step, 3:])
        analysis.record(step)  # staged, folded 8 at a time into blocks of 64, or when measured
        if step == 11:
            analysis.compute(step)
    records = recorded(analysis, walk)
    torch.testing.assert_close(analysis.latest().double(), records[-1])
    measurement = analysis.compute(steps)
    summary = measurement.scalars
    expected = torch.linalg.vector_norm(records.diff(dim=0), dim=1).sum()
    assert summary["diffusion/path_length"] == pytest.approx(float(expected), rel=1e-6)  # float32 differences
    assert summary["diffusion/distance_sq"] == pytest.approx(float((records[-1] - records[0]).square().sum()), rel=1e-12)
    # windows of 16 records: the last one completed (records 32-47) is logged; the 10 records in
    # progress have too few lags (up to 2) for a window of their own
    lags = measurement.arrays["diffusion/window_lags"]
    np.testing.assert_array_equal(lags, [1, 2, 3, 4])
    np.testing.assert_allclose(measurement.arrays["diffusion/window_msd"], msd(records[32:48], lags.astype(int)),
                               rtol=1e-6)


def test_persistence_skips_measurements_without_a_new_record():
    # records every 2 steps, measured at 10, 11, 20, 21: at 11 and 21 nothing was recorded since the
    # measurement before, which must neither give a persistence nor forget the move before it (it
    # did: every measurement with log_every=1 and every=2 reset the move, and none was ever logged)
    steps = 100
    params = [torch.zeros(3), torch.zeros(5)]
    analysis = diffusion_on(params, 64, steps, every=2)
    walk = torch.randn(steps + 1, 8, generator=torch.Generator().manual_seed(4)).cumsum(0)
    persistence = {}
    for step in range(22):
        params[0].copy_(walk[step, :3]), params[1].copy_(walk[step, 3:])
        if analysis.recording(step):
            analysis.record(step)
        if step in (10, 11, 20, 21):
            persistence[step] = analysis.compute(step).scalars.get("diffusion/persistence")
    assert persistence[10] is None and persistence[11] is None and persistence[21] is None
    a, b = walk[10] - walk[0], walk[20] - walk[10]
    assert persistence[20] == pytest.approx(float(a @ b / (a.norm() * b.norm())), rel=1e-5)
    # the summary keeps the latest value of each key logged, also where the last measurement has none
    assert analysis.last["diffusion/persistence"] == persistence[20]


def test_summary_holds_the_last_logged_value_of_every_key(tmp_path):
    # records every 2 steps, measured at 50, 100 and 101: at the end nothing was recorded since step
    # 100, so it logs no persistence; the summary held only the last measurement's keys (no persistence)
    summary = train_run(tmp_path, SMALL + ["trainer.steps=101", "trainer.checkpoint_every=0",
                                           "analysis.diffusion.every=2", "analysis.diffusion.dims=1024"])
    logged = {}
    for row in read_metrics(tmp_path / "metrics.jsonl"):
        logged.update({k: v for k, v in row.items() if k.startswith("diffusion/")})
    assert "diffusion/persistence" in logged
    assert {k: summary.get(k) for k in logged} == logged


@pytest.mark.parametrize("dims", [64, 4])  # exact (3 + 5 parameters) and projected
@pytest.mark.parametrize("every", [7, 200])
def test_the_end_of_the_run_between_records_is_measured(dims, every):
    # records every 7 steps end at step 28 of 30; every 200 records step 0 only (it reported a
    # distance and path length of 0 after 30 steps). The end counts for the distance and the path
    # length; the records, their MSD grid and what a checkpoint holds stay those of every `every` steps
    steps = 30
    params = [torch.zeros(3), torch.zeros(5)]
    analysis = diffusion_on(params, dims, steps, every=every, buffer=8, lags=3)
    walk = torch.randn(steps + 1, 8, generator=torch.Generator().manual_seed(4)).cumsum(0)
    for step in range(steps + 1):
        params[0].copy_(walk[step, :3]), params[1].copy_(walk[step, 3:])
        if analysis.recording(step):
            analysis.record(step)
    measurement = analysis.compute(steps)
    r = recorded(analysis, walk)
    grid = r[::every]
    path = torch.cat([grid, r[-1:]])  # the records, then the end
    expected = torch.linalg.vector_norm(path.diff(dim=0), dim=1).sum()
    s = measurement.scalars
    assert s["diffusion/distance_sq"] == pytest.approx(float((r[-1] - r[0]).square().sum()), rel=1e-6)
    assert s["diffusion/path_length"] == pytest.approx(float(expected), rel=1e-6)
    assert analysis.count == len(grid)
    state = analysis.state_dict()
    torch.testing.assert_close(state["previous"].double(), grid[-1])
    assert state["path_length"] == pytest.approx(float(torch.linalg.vector_norm(grid.diff(dim=0), dim=1).sum()),
                                                 rel=1e-6)
    if every == 7:  # MSD(0, τ) at the recorded lags 7, 14, 28 only
        np.testing.assert_array_equal(analysis.lags[0], [7, 14, 28])
        np.testing.assert_allclose(measurement.arrays["diffusion/tw0/msd"],
                                   [float((r[t] - r[0]).square().sum()) for t in (7, 14, 28)], rtol=1e-6)


def test_every_past_the_run_measures_its_end_and_resumes_exactly(tmp_path, monkeypatch):
    # `every` larger than the run: step 0 and the end; `every` 7 on a run of 100 steps, killed after
    # the checkpoint at 50 (between records), resumes to the same measurements at the end (step 100,
    # between records too)
    past = SMALL + ["trainer.steps=100", "trainer.checkpoint_every=0", "analysis.diffusion.every=200",
                    "analysis.diffusion.dims=4096"]  # exact: 2410 parameters
    summary = train_run(tmp_path / "past", past)
    assert summary["diffusion/distance_sq"] > 0
    assert summary["diffusion/path_length"] == pytest.approx(np.sqrt(summary["diffusion/distance_sq"]), rel=1e-5)
    between = SMALL + ["trainer.steps=100", "trainer.checkpoint_every=50", "analysis.diffusion.every=7"]
    train_run(tmp_path / "full", between)
    kill_after_checkpoint(tmp_path / "killed", between, monkeypatch, last_checkpoint=50)
    train_run(tmp_path / "killed", between + ["trainer.resume=true"])
    for name in ("metrics.jsonl", "arrays.jsonl"):
        assert read_metrics(tmp_path / "killed" / name) == read_metrics(tmp_path / "full" / name)


@pytest.mark.parametrize("dims", [0, 1])
def test_dims_below_2_are_refused(dims):
    # the projection is to the largest prime <= dims numbers: none below 2 (dims=1 projected to one
    # number, where every move is parallel to the last and the exponents are noise)
    with pytest.raises(ConfigError, match=rf"^analysis.diffusion.dims={dims} is not allowed: must be >= 2$"):
        validate(make_cfg(["analysis=[diffusion]", f"analysis.diffusion.dims={dims}"]))
    validate(make_cfg(["analysis=[diffusion]", "analysis.diffusion.dims=2"]))
