"""`tensortape train pix2pix|cyclegan` and `tensortape sample` end to end on tiny runs."""

from __future__ import annotations

import json
import math

import numpy
import pytest
from PIL import Image

import engine
from tensortape.cli import main

TINY = {
    "pix2pix": ["--hidden-dim", "16", "--noise-dim", "4"],
    "cyclegan": ["--hidden-dim", "4", "--disc-hidden-dim", "16"],
}


def train(task, out, *extra):
    main(["train", task, "--device", "cpu", "--no-progress", "--out", str(out), *TINY[task],
          *extra])  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def grid_size(examples: int, rows_per_block: int, nrow: int = 8, side: int = 32, pad: int = 2):
    """(width, height) of save_grid's grid of blocks of `rows_per_block` rows of `nrow` (8x8
    digits upscaled x4 to cells of 32)."""
    rows = math.ceil(examples / nrow) * rows_per_block
    return nrow * (side + pad) + pad, rows * (side + pad) + pad


@pytest.mark.parametrize("task", ["pix2pix", "cyclegan"])
def test_train_writes_samples_metrics_and_checkpoint_then_sample(task, tmp_path):
    metrics = train(task, tmp_path, "--epochs", "2", "--batch-size", "128")
    for name in ("samples.png", "metrics.json", "checkpoint.npz", "samples/epoch_0002.png"):
        assert (tmp_path / name).is_file(), name
    assert metrics["task"] == task and metrics["epochs"] == 2 and metrics["device"] == "cpu"
    history = metrics["history"]
    assert history["epoch"] == [1, 2]
    assert all(math.isfinite(v) for v in history["loss_g"] + history["loss_d"])
    test = metrics["test"]
    if task == "pix2pix":
        assert len(history["test_l1"]) == 2
        assert 0 < test["l1_masked"] < 0.5 and test["real_gradient"] > 0
        assert Image.open(tmp_path / "samples.png").size == grid_size(24, 3)
    else:
        assert len(history["test_mae_ab"]) == 2
        assert 0 < test["mae_ab"] < 1 and 0 < test["mae_ba"] < 1
        assert Image.open(tmp_path / "samples.png").size == grid_size(32, 3)

    state = engine.load(tmp_path / "checkpoint.npz")
    assert state["task"] == task and state["dataset"] == "digits" and state["epoch"] == 2
    assert state["settings"]["hidden"] == 16

    grid = tmp_path / "grid.png"
    main(["sample", str(tmp_path / "checkpoint.npz"), "--n", "16", "--out", str(grid),
          "--device", "cpu"])  # fmt: skip
    assert Image.open(grid).size == grid_size(16, 3)
    pixels = numpy.asarray(Image.open(grid).convert("L"), dtype=float)
    assert pixels.std() > 10  # digits, not a blank image


def test_options_reach_the_model(tmp_path):
    metrics = train("pix2pix", tmp_path, "--epochs", "1", "--l1-only", "--lambda-l1", "3",
                    "--lr", "0.01")  # fmt: skip
    assert "loss_d" not in metrics["history"]
    assert metrics["config"]["adversarial"] is False
    assert metrics["config"]["lambda_l1"] == 3.0 and metrics["config"]["lr"] == 0.01
    assert metrics["history"]["loss_g"][0] == pytest.approx(3 * metrics["history"]["l1"][0])
    cyc = train("cyclegan", tmp_path / "c", "--epochs", "1", "--lambda-identity", "0.5",
                "--gan-loss", "bce", "--batch-size", "512")  # fmt: skip
    assert cyc["config"]["lambda_identity"] == 0.5 and cyc["config"]["loss"] == "bce"
    assert cyc["epochs"] == 1 and (tmp_path / "c" / "checkpoint.npz").is_file()


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    opts = ("--batch-size", "256")
    straight = train("pix2pix", tmp_path / "a", "--epochs", "2", *opts)
    train("pix2pix", tmp_path / "b", "--epochs", "1", *opts)
    resumed = train("pix2pix", tmp_path / "b", "--epochs", "2", "--resume", *opts)
    for key in ("loss_g", "loss_d", "l1", "test_l1"):
        assert resumed["history"][key] == straight["history"][key]
    assert resumed["test"] == straight["test"]
    a = engine.load(tmp_path / "a" / "checkpoint.npz")["networks"]["generator"]
    b = engine.load(tmp_path / "b" / "checkpoint.npz")["networks"]["generator"]
    for key in a:
        numpy.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_help_lists_both_verbs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "pix2pix" in out and "cyclegan" in out
