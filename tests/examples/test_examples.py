"""The example scripts run as written (on the embedded digits) and learn."""

import importlib.util
from pathlib import Path

import pytest
from helpers import requires_mpi

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


TORCH_IMPORTS = {
    "import engine as torch": "import torch",
    "import engine.functional as F": "import torch.nn.functional as F",
    "import layers as nn": "import torch.nn as nn",
    "import optimizers as optim": "import torch.optim as optim",
    "from optimizers.lr_scheduler import StepLR": "from torch.optim.lr_scheduler import StepLR",
    "from engine.utils import save_image": "",
}


def load_as_pytorch(name, tmp_path):
    """The example with its tensortape imports swapped for PyTorch's, nothing else changed."""
    source = (EXAMPLES / f"{name}.py").read_text()
    assert "import layers as nn" in source and "import engine.functional as F" in source
    for ours, theirs in TORCH_IMPORTS.items():
        source = source.replace(ours, theirs)
    path = tmp_path / f"torch_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"torch_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_model_code_is_pytorch_code_but_for_the_imports(tmp_path):
    torch = pytest.importorskip("torch")
    mnist = load_as_pytorch("mnist", tmp_path)
    net = mnist.Net(flat_features=64 * 2 * 2)
    out = net(torch.rand(4, 1, 8, 8))
    loss = torch.nn.functional.nll_loss(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert out.shape == (4, 10) and net.conv1.weight.grad is not None

    vae = load_as_pytorch("vae", tmp_path)
    model = vae.VAE(pixels=64)
    x = torch.rand(5, 1, 8, 8)
    recon, mu, logvar = model(x)
    vae.loss_function(recon, x, mu, logvar).backward()
    assert recon.shape == (5, 64) and model.fc1.weight.grad is not None


@requires_mpi
def test_ddp_example_on_two_ranks_learns_and_only_rank_0_reports(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tensortape", "launch", "--nproc", "2", str(EXAMPLES / "ddp.py")]
    cmd += ["--epochs", "1", "--save", str(tmp_path / "w.npz")]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch 1")]
    assert len(lines) == 1 and "(359 samples, 2 ranks)" in lines[0]  # rank 0 alone prints
    assert float(lines[0].split("accuracy ")[1].split()[0]) > 0.8
    assert (tmp_path / "w.npz").exists()
