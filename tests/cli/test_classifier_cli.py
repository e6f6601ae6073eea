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
    history = metrics["history"]
    assert len(history["train_loss"]) == 2 and len(history["test_accuracy"]) == 2
    assert history["train_loss"][1] < history["train_loss"][0]
    assert history["test_accuracy"][-1] > 0.7
    assert metrics["final_test_accuracy"] == history["test_accuracy"][-1]
    assert metrics["config"]["model"] == "mlp" and metrics["epochs"] == 2
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
    no_time = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert no_time(resumed["history"]) == no_time(straight["history"])
    a = engine.load(tmp_path / "a" / "checkpoint.npz")["networks"]["model"]
    b = engine.load(tmp_path / "b" / "checkpoint.npz")["networks"]["model"]
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_resume_from_a_checkpoint_of_the_former_classifier_loop(tmp_path, monkeypatch):
    """Checkpoints written before the classifier moved onto the Trainer still resume exactly."""
    straight = run(tmp_path / "a", "--epochs", "2")
    evaluate, calls = classifier.evaluate, []

    def crash_on_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(classifier, "evaluate", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", "--epochs", "2")
    monkeypatch.setattr(classifier, "evaluate", evaluate)
    new = engine.load(tmp_path / "b" / "checkpoint.npz")
    history = new["history"]
    old = {
        "task": "classifier",
        "args": {"model": "mlp"},
        "epoch": 1,
        "model": new["networks"]["model"],
        "optimizer": new["optimizers"]["model"],
        "scheduler": new["schedulers"]["lr"],
        "loader": new["loader"],
        "rng": new["rng"],
        "metrics": {k: history[k] for k in ("train_loss", "test_loss", "test_accuracy")},
    }
    engine.save(old, tmp_path / "b" / "checkpoint.npz")
    resumed = run(tmp_path / "b", "--epochs", "2", "--resume")
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert resumed["history"][key] == straight["history"][key]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", classifier.OPTIMIZERS)
def test_every_optimizer_learns_the_digits_mlp_with_its_default_lr(tmp_path, optimizer):
    metrics = run(tmp_path, "--optimizer", optimizer)  # 30 epochs, the defaults
    assert metrics["settings"]["lr"] == classifier.DEFAULT_LR[optimizer]
    assert metrics["final_test_accuracy"] >= 0.96
