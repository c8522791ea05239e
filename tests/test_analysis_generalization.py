"""`analysis=[generalization]`: its schedule (`every`, `sharpness_every`), and training left alone."""
from __future__ import annotations

from conftest import train_run
from sgdexp.tracking import read_metrics

SMALL = ["model.widths=[16]", "dataset.subset=256", "trainer.steps=60", "trainer.eval_every=30",
         "trainer.log_every=10", "trainer.checkpoint_every=30"]
GAPS = {"generalization/train_loss", "generalization/test_loss", "generalization/loss_gap",
        "generalization/distance_from_init", "generalization/weight_norm"}
SHARPNESS = {"generalization/top_eigenvalue", "generalization/trace", "generalization/trace_se"}


def steps_with(rows, keys):
    return [r["step"] for r in rows if keys <= set(r)]


def test_sharpness_every_is_measured_on_its_own_steps(tmp_path):
    # `every`=30 and `sharpness_every`=20: the gaps at 0, 30, 60, the sharpness at 0, 20, 40, 60
    # (steps where `every` is not due measure the sharpness alone)
    train_run(tmp_path / "plain", SMALL)
    train_run(tmp_path / "analysed", SMALL + ["analysis=[generalization]", "analysis.generalization.every=30",
                                              "analysis.generalization.sharpness_every=20"])
    rows = read_metrics(tmp_path / "analysed" / "metrics.jsonl")
    assert steps_with(rows, GAPS) == [0, 30, 60]
    assert steps_with(rows, SHARPNESS) == [0, 20, 40, 60]
    assert not [r["step"] for r in rows if r["step"] in (20, 40) and GAPS & set(r)]
    # and the extra measurements leave training alone
    keep = ("step", "train/", "test/", "gap/", "lr")
    strip = lambda rs: [{k: v for k, v in r.items() if k.startswith(keep)} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "plain" / "metrics.jsonl")) == strip(rows)


def test_sharpness_every_starts_at_start(tmp_path):
    train_run(tmp_path, SMALL + ["analysis=[generalization]", "analysis.generalization.every=30",
                                 "analysis.generalization.start=30", "analysis.generalization.sharpness_every=20"])
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert steps_with(rows, GAPS) == [30, 60]
    assert steps_with(rows, SHARPNESS) == [40, 60]
