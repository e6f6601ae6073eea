"""No host sync inside a training step on cuda (issue 12): the steps keep their losses on the
device and the Trainer reads them once per log point.

Counted on the CuPy stand-in (tests/cuda_sim/counters.py), which counts every operation that
makes the host wait for a GPU: reading device memory (`.item()`, `float()`, `bool()`, `.get()`)
and the routines whose output size depends on the data (boolean masks, `nonzero`, `unique`).
"""

from __future__ import annotations

import pytest
from cuda_sim import counters

import engine
import optimizers
from benchmarks import workloads
from engine.data import DataLoader, TensorDataset
from generative import GAN, ConditionalGAN
from generative.autoencoder import Autoencoder
from generative.autoencoder_trainer import AutoencoderTrainer
from generative.encoders import build_networks
from generative.models import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    mlp_discriminator,
    mlp_generator,
)
from generative.vae import VAE
from tensortape.tasks.classifier import ClassifierTrainer, cnn, mlp

pytestmark = pytest.mark.cuda


@pytest.fixture
def sim():
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("syncs are counted on the CuPy stand-in")


def _syncs(fn, *args) -> list[str]:
    with counters.count() as c:
        fn(*args)
    return c.sync_sites


def _batch(digits, n=16, device="cuda"):
    x, y = digits[0].tensors
    return x[:n].to(device), y[:n].to(device)


def _classifier(arch):
    engine.manual_seed(0)
    model = (mlp if arch == "mlp" else cnn)((1, 8, 8))
    opt = optimizers.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    return ClassifierTrainer(model, opt, device="cuda", progress=False)


def _gan():
    engine.manual_seed(0)
    return GAN(mlp_generator(4, hidden=16), mlp_discriminator(hidden=16), 4, device="cuda",
               progress=False)  # fmt: skip


def _cgan():
    engine.manual_seed(0)
    g = ConditionalGenerator(mlp_generator(4, hidden=16, in_extra=3), 10, 3)
    d = ConditionalDiscriminator(mlp_discriminator(hidden=16, in_extra=3), 10, (1, 8, 8), 3)
    return ConditionalGAN(g, d, 4, 10, device="cuda", progress=False)


def _vae():
    engine.manual_seed(0)
    enc, dec = build_networks("mlp", (1, 8, 8), 4, 8, width=16)
    return AutoencoderTrainer(VAE(enc, dec, 4), device="cuda", task="vae", progress=False)


def _ae():
    engine.manual_seed(0)
    enc, dec = build_networks("conv", (1, 8, 8), 4, 4, width=4)
    return AutoencoderTrainer(Autoencoder(enc, dec, loss="bce"), device="cuda", progress=False)


TRAINERS = {
    "classifier-mlp": lambda: _classifier("mlp"),
    "classifier-cnn": lambda: _classifier("cnn"),
    "gan": _gan,
    "cgan": _cgan,
    "vae": _vae,
    "ae": _ae,
}


@pytest.mark.parametrize("name", TRAINERS)
def test_a_trainer_step_does_not_sync(sim, digits, name):
    trainer = TRAINERS[name]()
    batch = _batch(digits) if name.startswith(("classifier", "cgan")) else _batch(digits)[:1]
    trainer.train_step(batch)  # first step: optimizer state created
    assert _syncs(trainer.train_step, batch) == []


@pytest.mark.parametrize("name", ["classifier-mlp", "gan"])
def test_fit_reads_the_losses_once_per_log_point(sim, digits, name):
    """The syncs of an epoch do not grow with its steps: 16 steps cost what 4 steps cost."""

    def epoch_syncs(steps: int) -> int:
        trainer = TRAINERS[name]()
        trainer.log_every = 100
        x, y = (t.numpy() for t in _batch(digits, 8 * steps, "cpu"))
        data = TensorDataset(x, y) if name.startswith("classifier") else TensorDataset(x)
        return len(_syncs(trainer.fit, DataLoader(data, 8), 1))

    assert epoch_syncs(16) == epoch_syncs(4) <= 2


@pytest.mark.parametrize("workload", [w.name for w in workloads.WORKLOADS])
def test_benchmark_steps_do_not_sync(sim, workload):
    (w,) = [w for w in workloads.WORKLOADS if w.name == workload]
    step = w.build(workloads.ours_lib("cuda"))
    step()
    assert _syncs(step) == []
