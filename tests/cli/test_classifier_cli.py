"""`tensortape train classifier` end to end on a tiny run, and bit-exact resume."""

import json

import numpy as np
import pytest
from helpers import cli_error

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


def _crash_after(monkeypatch, epochs: int) -> None:
    """The next run raises KeyboardInterrupt in epoch `epochs + 1` (its checkpoint: `epochs`)."""
    evaluate, calls = classifier.evaluate, []

    def crash(*args):
        calls.append(1)
        if len(calls) == epochs + 1:
            monkeypatch.setattr(classifier, "evaluate", evaluate)
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(classifier, "evaluate", crash)


def test_resume_with_more_epochs_replans_the_cosine_continuously(tmp_path, monkeypatch, capsys):
    lr0 = classifier.DEFAULT_LR["adam"]
    cosine = lambda t, T, start: start * (1 + np.cos(np.pi * t / T)) / 2  # noqa: E731
    _crash_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--epochs", "6")  # killed after epoch 3 of 6
    capsys.readouterr()
    resumed = run(tmp_path, "--epochs", "10", "--resume")
    assert (
        "epoch 3 done, training to 10; lr schedule re-planned: cosine from 0.001 after epoch 3 "
        "to 0 at epoch 10 (it ended at epoch 6)\n"
    ) in capsys.readouterr().err
    lr = np.array(resumed["history"]["lr"])
    assert resumed["history"]["epoch"] == list(range(1, 11))
    # Epochs 1-3 on the 6-epoch cosine; epoch 4 at the rate the 6-epoch run would have used
    # (lr0 / 2); from there a half cosine over the 7 epochs left, reaching 0 after epoch 10.
    np.testing.assert_allclose(lr[:4], cosine(np.arange(4), 6, lr0), rtol=1e-12)
    np.testing.assert_allclose(lr[3:], cosine(np.arange(7), 7, lr0 / 2), rtol=1e-12)
    assert np.all(np.diff(lr) < 0) and lr[-1] > 0  # decreasing, no jump, no restart
    assert np.max(np.abs(np.diff(lr))) <= lr0 * np.pi / 12  # no step bigger than the cosine's

    # Killed again mid-way, the re-planned schedule resumes exactly (no second re-plan).
    _crash_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", "--epochs", "6")
    _crash_after(monkeypatch, 4)  # resumed at 2: crashes in epoch 7, checkpoint at 6
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", "--epochs", "10", "--resume")
    capsys.readouterr()
    again = run(tmp_path / "b", "--epochs", "10", "--resume")
    assert "re-planned" not in capsys.readouterr().err
    lr_b = np.array(again["history"]["lr"])
    np.testing.assert_allclose(lr_b[2:], cosine(np.arange(8), 8, cosine(2, 6, lr0)), rtol=1e-12)


def test_resume_with_fewer_epochs_replans_and_a_finished_run_cannot_be_extended(
    tmp_path, monkeypatch, capsys
):
    lr0 = classifier.DEFAULT_LR["adam"]
    _crash_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--epochs", "8")
    shorter = run(tmp_path, "--epochs", "4", "--resume")
    lr = np.array(shorter["history"]["lr"])
    start = lr0 * (1 + np.cos(np.pi * 2 / 8)) / 2
    np.testing.assert_allclose(lr[2:], start * (1 + np.cos(np.pi * np.arange(2) / 2)) / 2)

    # Its schedule has now reached 0: more epochs would train at lr 0 (or silently restart).
    argv = ["train", "classifier", "--model", "mlp", "--device", "cpu", "--out", str(tmp_path)]
    code, line = cli_error(argv + ["--resume", "--epochs", "6"], capsys)
    assert code == 2
    assert "--epochs 6: " in line and "is a finished run (its cosine lr schedule reached 0" in line
    assert "start a new run with --epochs 6" in line
    assert engine.load(tmp_path / "checkpoint.npz")["epoch"] == 4  # nothing changed
