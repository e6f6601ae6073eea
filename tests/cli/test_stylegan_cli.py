"""`tensortape train stylegan`, `sample` and `mix` end to end on a tiny run, and resume."""

import json

import numpy
import pytest
from helpers import cli_error
from PIL import Image

import engine
from generative.stylegan import RECIPES
from tensortape.cli import main


@pytest.fixture(autouse=True)
def tiny_recipe(monkeypatch, tmp_path_factory):
    """A tiny network in place of the digits recipe; the judge cached in a temp folder."""
    tiny = dict(
        RECIPES["digits"],
        z_dim=8,
        w_dim=8,
        mapping_layers=2,
        channels=(8, 4),
        d_channels=(4, 4, 4),
    )
    monkeypatch.setitem(RECIPES, "digits", tiny)
    monkeypatch.setenv("TENSORTAPE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def train(out, *extra):
    main(
        [
            "train",
            "stylegan",
            "--device",
            "cpu",
            "--no-progress",
            "--batch-size",
            "256",
            "--out",
            str(out),
            *extra,
        ]
    )
    return json.loads((out / "metrics.json").read_text())


def test_train_sample_and_mix(tmp_path, capsys):
    metrics = train(tmp_path, "--epochs", "2", "--r1-gamma", "0.5")
    history = metrics["history"]
    assert history["epoch"] == [1, 2]
    assert all(numpy.isfinite(history[k]).all() for k in ("loss_d", "loss_g", "r1"))
    assert len(history["classes_covered"]) == 2  # the judge scored every epoch
    assert all(1 <= c <= 10 for c in history["classes_covered"])
    assert metrics["config"]["r1_gamma"] == 0.5 and metrics["config"]["z_dim"] == 8
    for name in ("samples.png", "mix.png", "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 100
    assert Image.open(tmp_path / "mix.png").size == (240, 240)  # (6 + 1) x (6 + 1) cells of 32 + 2

    ckpt = str(tmp_path / "checkpoint.npz")
    main(
        [
            "sample",
            ckpt,
            "--n",
            "9",
            "--out",
            str(tmp_path / "grid.png"),
            "--device",
            "cpu",
            "--truncation-psi",
            "0.5",
        ]
    )
    assert Image.open(tmp_path / "grid.png").size == (104, 104)  # 3 x 3 cells of 8 x4 + padding 2

    main(
        [
            "mix",
            ckpt,
            "--n",
            "3",
            "--layers",
            "fine",
            "--out",
            str(tmp_path / "fine.png"),
            "--device",
            "cpu",
        ]
    )
    main(
        [
            "mix",
            ckpt,
            "--n",
            "3",
            "--layers",
            "0,1",
            "--out",
            str(tmp_path / "coarse.png"),
            "--device",
            "cpu",
        ]
    )
    fine = numpy.asarray(Image.open(tmp_path / "fine.png"))
    coarse = numpy.asarray(Image.open(tmp_path / "coarse.png"))
    assert fine.shape[:2] == (138, 138)  # (3 + 1) x (3 + 1) cells of 8 x4 + padding 2
    # Same latents, so the header row and column agree; the mixed cells differ.
    numpy.testing.assert_array_equal(fine[:34], coarse[:34])
    assert not numpy.array_equal(fine[34:], coarse[34:])
    out = capsys.readouterr().out
    assert "mix.png" in out and "9 StyleGAN samples" in out


def test_mix_rejects_bad_layers_and_other_checkpoints(tmp_path, capsys):
    train(tmp_path, "--epochs", "1")
    ckpt = str(tmp_path / "checkpoint.npz")
    x = str(tmp_path / "x.png")
    code, line = cli_error(["mix", ckpt, "--layers", "0,9", "--out", x, "--device", "cpu"], capsys)
    assert code == 2 and "out of range" in line
    code, line = cli_error(["mix", ckpt, "--layers", "big", "--out", x, "--device", "cpu"], capsys)
    assert code == 2 and "comma-separated" in line
    engine.save({"task": "classifier"}, tmp_path / "other.npz")
    code, line = cli_error(["mix", str(tmp_path / "other.npz"), "--out", x], capsys)
    assert code == 1 and "mix needs a StyleGAN checkpoint" in line
    assert not (tmp_path / "x.png").exists()


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    straight = train(tmp_path / "a", "--epochs", "2")
    train(tmp_path / "b", "--epochs", "1")
    resumed = train(tmp_path / "b", "--epochs", "2", "--resume")
    assert resumed["history"]["loss_d"] == straight["history"]["loss_d"]
    assert resumed["history"]["loss_g"] == straight["history"]["loss_g"]
    a = engine.load(tmp_path / "a" / "checkpoint.npz")["networks"]["generator"]
    b = engine.load(tmp_path / "b" / "checkpoint.npz")["networks"]["generator"]
    for key in a:
        numpy.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
