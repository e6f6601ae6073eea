"""`tensortape train ae|vae|conv-vae` and `tensortape sample` end to end on tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import cli_error
from PIL import Image

import engine
from tensortape.cli import main

OUTPUTS = (
    "samples.png",
    "reconstructions.png",
    "interpolations.png",
    "latent.png",
    "metrics.json",
    "checkpoint.npz",
)


@pytest.fixture(autouse=True)
def judge_cache(tmp_path_factory, monkeypatch):
    """One digits judge for the whole module, trained into a temporary cache."""
    monkeypatch.setenv("TENSORTAPE_CACHE", str(tmp_path_factory.getbasetemp() / "judge_cache"))


def _train(task, out, *extra, device="cpu"):
    argv = [
        "train",
        task,
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--device",
        device,
        "--out",
        str(out),
        "--no-progress",
        "--latent-dim",
        "4",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def _pixels(path):
    return np.asarray(Image.open(path).convert("L"))


def test_vae_trains_writes_everything_and_samples(tmp_path, capsys):
    out = tmp_path / "vae"
    metrics = _train("vae", out, "--hidden-dim", "32", "--iw-samples", "5")
    for name in OUTPUTS:
        assert (out / name).exists(), name
    # better than coin flips (64 log 2 nats), worse than a trained model
    assert 20.0 < metrics["test_neg_elbo"] < 64 * np.log(2)
    assert metrics["test_iw_nll"] <= metrics["test_neg_elbo"] + 0.5
    assert metrics["config"]["binarize"] is True and metrics["epochs"] == 1
    assert len(metrics["history"]["test_neg_elbo"]) == 1
    assert 1 <= metrics["judge"]["classes_covered"] <= 10
    assert "test_neg_elbo" in capsys.readouterr().out
    # reconstructions.png: 8 rows (images and reconstructions) of 8 digits, 8x8 upscaled x4 to
    # cells of 32, + 2px padding
    assert _pixels(out / "reconstructions.png").shape == (274, 274)
    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "sample",
                str(out / "checkpoint.npz"),
                "--n",
                "9",
                "--out",
                str(grid),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pixels = _pixels(grid)
    assert pixels.shape == (104, 104) and pixels.max() > 100  # 3x3 digits (x4), not blank


def test_ae_conv_model_checkpoint_samples_from_its_latent_gaussian(tmp_path):
    out = tmp_path / "ae"
    metrics = _train("ae", out, "--model", "conv", "--hidden-dim", "4", "--loss", "mse")
    assert "test_loss" in metrics and "test_neg_elbo" not in metrics
    state = engine.load(out / "checkpoint.npz")
    assert state["task"] == "ae" and state["config"]["model"] == "conv"
    assert "latent_loc" in state["networks"]["model"]
    grid = tmp_path / "ae.png"
    assert (
        main(
            [
                "sample",
                str(out / "checkpoint.npz"),
                "--n",
                "4",
                "--out",
                str(grid),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert _pixels(grid).shape == (70, 70)


def test_conv_vae_resume_continues_the_run(tmp_path):
    out = tmp_path / "cvae"
    _train("conv-vae", out, "--hidden-dim", "4", "--iw-samples", "0")
    argv = [
        "train",
        "conv-vae",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--latent-dim",
        "4",
        "--hidden-dim",
        "4",
        "--iw-samples",
        "0",
        "--resume",
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["history"]["epoch"] == [1, 2]
    assert "test_iw_nll" not in metrics and metrics["config"]["model"] == "conv"


def test_gaussian_likelihood_keeps_grey_levels(tmp_path):
    metrics = _train(
        "vae", tmp_path / "g", "--likelihood", "gaussian", "--hidden-dim", "16", "--iw-samples", "3"
    )
    assert metrics["config"]["binarize"] is False
    assert np.isfinite(metrics["test_neg_elbo"]) and np.isfinite(metrics["test_iw_nll"])


def test_train_and_sample_on_each_device(tmp_path, device):
    metrics = _train(
        "conv-vae", tmp_path / "d", "--hidden-dim", "4", "--iw-samples", "2", device=device
    )
    assert metrics["device"].startswith(device) and np.isfinite(metrics["test_neg_elbo"])
    grid = tmp_path / "d.png"
    assert (
        main(
            [
                "sample",
                str(tmp_path / "d" / "checkpoint.npz"),
                "--n",
                "4",
                "--out",
                str(grid),
                "--device",
                device,
            ]
        )
        == 0
    )
    assert _pixels(grid).shape == (70, 70)  # 2 x 2 digits of 8 x4 + padding 2


def test_sample_rejects_a_checkpoint_without_a_task(tmp_path, capsys):
    engine.save({"model": {}}, tmp_path / "x.npz")
    code, line = cli_error(["sample", str(tmp_path / "x.npz")], capsys)
    assert code == 1 and "not a checkpoint of `tensortape train`" in line
