"""`tensortape train classifier` end to end on a tiny run, and bit-exact resume."""

import json

import numpy as np
import pytest

import engine
from tensortape.cli import main
from tensortape.tasks import classifier


def run(out, *extra):
    main(
        [
            "train",
            "classifier",
            "--model",
            "mlp",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )
    return json.loads((out / "metrics.json").read_text())


def test_classifier_writes_metrics_curves_and_checkpoint(tmp_path):
    metrics = run(tmp_path, "--epochs", "2")
    assert len(metrics["train_loss"]) == 2 and len(metrics["test_accuracy"]) == 2
    assert metrics["train_loss"][1] < metrics["train_loss"][0]
    assert metrics["test_accuracy"][-1] > 0.7
    assert (tmp_path / "curves.png").stat().st_size > 1000
    state = engine.load(tmp_path / "checkpoint.npz")
    assert state["task"] == "classifier" and state["epoch"] == 2


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, monkeypatch):
    opts = ("--epochs", "3", "--optimizer", "nesterov", "--l2", "1e-4")
    straight = run(tmp_path / "a", *opts)

    # Crash the second run after its first epoch's checkpoint, then resume it.
    evaluate = classifier.evaluate
    calls = []

    def crash_on_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(classifier, "evaluate", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", *opts)
    monkeypatch.setattr(classifier, "evaluate", evaluate)
    assert engine.load(tmp_path / "b" / "checkpoint.npz")["epoch"] == 1
    resumed = run(tmp_path / "b", *opts, "--resume")
    assert resumed["train_loss"] == straight["train_loss"]
    a = engine.load(tmp_path / "a" / "checkpoint.npz")["model"]
    b = engine.load(tmp_path / "b" / "checkpoint.npz")["model"]
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
