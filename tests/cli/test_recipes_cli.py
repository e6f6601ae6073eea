"""Every `tensortape train VERB --dataset DATASET` runs the recipe named for that dataset (unless
an option overrides it) and records the settings it used in metrics.json.

MNIST and Fashion-MNIST are small crafted IDX files (no download); the digits are cut to a few
images so that every pair runs in a fraction of a second.
"""

from __future__ import annotations

import json

import pytest
from helpers import make_mnist_dir

import engine.data
from generative.cyclegan import CYCLEGAN_RECIPES
from generative.models import RECIPES as GAN_RECIPES
from generative.pix2pix import PIX2PIX_RECIPES
from generative.stylegan import RECIPES as STYLEGAN_RECIPES
from tensortape.cli import TASKS, build_parser, main
from tensortape.tasks import gan, stylegan

DATASETS = ("digits", "mnist", "fashion")

# The verbs with one recipe for every dataset: their options' defaults.
CLASSIFIER = {"epochs": 30, "batch_size": 32, "lr": 2e-3, "optimizer": "adam", "dropout": 0.5}
AUTOENCODER = {"epochs": 50, "batch_size": 64, "lr": 1e-3}


def recipe(verb: str, dataset: str) -> dict:
    """What the verb must run on `dataset` when no option is given (JSON's view of it)."""
    if verb in ("gan", "cgan"):
        r = GAN_RECIPES[(verb, dataset)]
    elif verb == "stylegan":
        r = STYLEGAN_RECIPES[dataset]
    elif verb == "pix2pix":
        r = PIX2PIX_RECIPES[dataset]
    elif verb == "cyclegan":
        r = CYCLEGAN_RECIPES[dataset]
    elif verb == "classifier":
        r = CLASSIFIER
    else:
        r = AUTOENCODER
    return json.loads(json.dumps(r))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """Crafted IDX files for mnist/fashion, and the digits cut to 128 train and 16 test images
    (one full batch of the largest recipe: the GANs drop a partial last batch, and an epoch
    without a step is an error)."""
    root = tmp_path / "data"
    root.mkdir()
    make_mnist_dir(root, n_train=128, n_test=16)
    full = engine.data.load_digits

    def few_digits():
        train, test = full()
        return (
            engine.data.TensorDataset(*(t[:128] for t in train.tensors)),
            engine.data.TensorDataset(*(t[:16] for t in test.tensors)),
        )

    monkeypatch.setattr(engine.data, "load_digits", few_digits)
    return root


def test_the_gan_recipes_differ_by_dataset():
    """The bug this file guards: `train gan --dataset mnist` took the digits recipe."""
    mnist = GAN_RECIPES[("gan", "mnist")]
    assert (mnist["lr"], mnist["latent_dim"], mnist["batch_size"], mnist["epochs"]) == (
        2e-4,
        64,
        128,
        20,
    )
    assert GAN_RECIPES[("gan", "digits")]["lr"] == 1e-3


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("verb", list(TASKS))
def test_each_verb_runs_the_recipe_of_its_dataset(tmp_path, data_dir, verb, dataset):
    out = tmp_path / "out"
    main(["train", verb, "--dataset", dataset, "--data-dir", str(data_dir), "--device", "cpu",
          "--no-progress", "--out", str(out), "--epochs", "1"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    used = metrics["settings"]
    expected = {**recipe(verb, dataset), "epochs": 1}  # --epochs overrides the recipe
    assert {k: used[k] for k in expected} == expected
    if verb in ("gan", "cgan", "stylegan", "pix2pix", "cyclegan"):  # it reached the trainer
        assert metrics["config"]["lr"] == expected["lr"]
        if "betas" in expected:
            assert metrics["config"]["betas"] == expected["betas"]
    if verb in ("gan", "cgan"):
        assert metrics["config"]["latent_dim"] == expected["latent_dim"]
    if verb == "stylegan":
        assert metrics["config"]["z_dim"] == expected["z_dim"]
        assert metrics["config"]["channels"] == expected["channels"]
    if verb in ("ae", "vae", "conv-vae"):
        assert metrics["config"]["lr"] == expected["lr"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("verb", ["gan", "cgan", "stylegan"])
def test_recipe_epochs_and_batch_size_follow_the_dataset(verb, dataset):
    """Without options, epochs, batch size and lr are the dataset's (not the digits') recipe."""
    args = build_parser().parse_args(["train", verb, "--dataset", dataset])
    used = (gan if verb != "stylegan" else stylegan).settings(args)
    expected = recipe(verb, dataset)
    for key in ("epochs", "batch_size", "lr"):
        assert used[key] == expected[key] == getattr(args, key), key


@pytest.mark.parametrize("verb", ["gan", "stylegan"])
def test_options_override_the_recipe(verb):
    args = build_parser().parse_args(
        ["train", verb, "--dataset", "mnist", "--lr", "0.01", "--batch-size", "7", "--epochs", "3"]
    )
    used = (gan if verb != "stylegan" else stylegan).settings(args)
    assert (used["lr"], used["batch_size"], used["epochs"]) == (0.01, 7, 3)
