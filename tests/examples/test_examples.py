"""The example scripts run as written (on the embedded digits) and learn."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_example_learns_digits(capsys):
    accuracy = load("mnist").main(["--epochs", "2", "--log-interval", "1000", "--no-cuda"])
    assert accuracy > 0.6  # chance is 0.1
    assert "Test set: Average loss" in capsys.readouterr().out


def test_vae_example_lowers_the_test_loss(tmp_path, capsys):
    first = load("vae").main(["--epochs", "1", "--out", str(tmp_path)])
    assert (tmp_path / "sample_1.png").exists() and (tmp_path / "reconstruction_1.png").exists()
    later = load("vae").main(["--epochs", "3", "--out", str(tmp_path)])
    assert later < first
    # 64 Bernoulli pixels: a model that learned nothing sits near 64 * log 2 = 44 nats.
    assert later < 40


@pytest.mark.parametrize("name", ["mnist", "vae"])
def test_examples_change_only_imports_from_pytorch_idioms(name):
    source = (EXAMPLES / f"{name}.py").read_text()
    assert "import layers as nn" in source and "import engine.functional as F" in source
