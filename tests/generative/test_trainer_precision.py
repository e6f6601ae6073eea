"""The Trainer's precision policies (`--precision 32|16-mixed|bf16-mixed|tf32`): autocast around
each step, float32 master weights, the scaler's skip/backoff inside fit, its state in checkpoints
and on resume, the GAN penalties' double backward under autocast, and the CLI switch."""

from __future__ import annotations

import json
import warnings

import numpy
import pytest
from helpers import cli_error

import engine
import layers as nn
import optimizers
from engine.data import DataLoader, TensorDataset
from generative.trainer import MixedPrecision, Precision, TF32Precision, Trainer, make_precision
from tensortape.cli import main


class Regressor(Trainer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)).to(self.device)
        self.networks = {"net": self.net}
        self.optimizers = {"net": optimizers.Adam(self.net.parameters(), lr=1e-2)}
        self.seen = []

    def train_step(self, batch):
        x, y = batch
        opt = self.optimizers["net"]
        opt.zero_grad()
        out = self.net(x)
        loss = engine.functional.mse_loss(out, y)
        self.seen.append((str(out.dtype), str(loss.dtype)))
        self.backward(loss)
        self.step(opt)
        return {"loss": loss}

    def preview(self):
        return None


def _loader():
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(numpy.float32)
    return DataLoader(TensorDataset(x, x[:, ::-1].copy()), batch_size=8)


@pytest.mark.parametrize(
    "name, low", [("16-mixed", "float16"), ("bf16-mixed", "bfloat16"), ("32", "float32")]
)
def test_policies_run_the_step_in_their_dtypes(device, name, low):
    if device == "cuda" and low == "bfloat16":
        pytest.skip("the CuPy stand-in refuses bfloat16 arrays")
    t = Regressor(device=device, progress=False, precision=make_precision(name))
    history = t.fit(_loader(), 3)
    assert t.seen[0] == (low, "float32")  # linear in the low dtype, the loss in float32
    assert all(p.dtype == numpy.float32 for p in t.net.parameters())  # master weights
    assert history["loss"][-1] < history["loss"][0]
    scaler = getattr(t.precision, "scaler", None)
    assert (scaler is not None) == (name == "16-mixed")  # bfloat16 needs no scaler


def test_16_mixed_skips_an_overflowing_step_and_backs_off_inside_fit():
    t = Regressor(device="cpu", progress=False, precision=MixedPrecision("float16"))
    t.precision.scaler = engine.amp.GradScaler(init_scale=2.0**60)  # float16 grads overflow
    with warnings.catch_warnings():
        # The overflow is the scaler's signal, not the user's problem: no NumPy warning in a run.
        warnings.simplefilter("error", RuntimeWarning)
        t.fit(_loader(), 1)  # 4 batches
    state = t.optimizers["net"].state_dict()["state"]
    taken = int(numpy.asarray(state[0]["step"])) if state else 0
    assert taken < 4  # at least one overflowing step was skipped ...
    assert t.precision.scaler.get_scale() == 2.0**60 * 0.5 ** (4 - taken)  # ... and backed off


def test_scaler_state_survives_checkpoint_and_resume(tmp_path):
    t = Regressor(device="cpu", progress=False, out_dir=tmp_path, precision=MixedPrecision())
    t.precision.scaler = engine.amp.GradScaler(init_scale=2.0**30, growth_interval=3)
    t.fit(_loader(), 2)
    saved = t.precision.scaler.state_dict()
    assert saved["scale"] != 2.0**30 or saved["_growth_tracker"] != 0  # it moved
    # A run without a chosen precision adopts the checkpoint's, scaler state included.
    r = Regressor(device="cpu", progress=False)
    r.load_checkpoint(tmp_path / "checkpoint.npz")
    assert r.precision.name == "16-mixed" and r.precision.scaler.state_dict() == saved
    # One that asks for another precision is refused, naming both.
    with pytest.raises(
        ValueError, match="trained with precision '16-mixed'.*asks for 'bf16-mixed'"
    ):
        Regressor(
            device="cpu", progress=False, precision=make_precision("bf16-mixed")
        ).load_checkpoint(tmp_path / "checkpoint.npz")
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"] == "16-mixed"


def test_tf32_policy_turns_the_switch_on_only_inside_steps():
    assert engine.backends.cuda.matmul.allow_tf32 is False
    policy = TF32Precision()
    with policy.autocast():
        assert engine.backends.cuda.matmul.allow_tf32 is True
    assert engine.backends.cuda.matmul.allow_tf32 is False
    assert make_precision("32").name == "32" and type(make_precision("32")) is Precision
    with pytest.raises(ValueError, match="precision must be one of"):
        make_precision("8-mixed")


@pytest.mark.parametrize("name", ["16-mixed", "bf16-mixed"])
def test_wgan_gp_trains_under_autocast(name):
    """The gradient penalty's create_graph backward under autocast reaches both networks."""
    from generative import GAN
    from generative.models import mlp_discriminator, mlp_generator

    engine.manual_seed(0)
    gan = GAN(mlp_generator(4, hidden=16), mlp_discriminator(hidden=16), 4, loss="wgan-gp",
              lr=1e-2, device="cpu", progress=False)  # fmt: skip
    gan.precision = make_precision(name)
    x = engine.rand(16, 1, 8, 8)
    before = [
        p.numpy().copy() for p in (*gan.generator.parameters(), *gan.discriminator.parameters())
    ]
    for _ in range(12):  # float16's first steps may overflow at 2**16 and be skipped (as torch)
        with gan.precision.autocast():
            losses = gan.train_step((x, engine.zeros(16, dtype="int64")))
    after = [p.numpy() for p in (*gan.generator.parameters(), *gan.discriminator.parameters())]
    assert all(numpy.isfinite(float(v)) for v in losses.values())
    assert sum(not numpy.array_equal(b, a) for b, a in zip(before, after, strict=True)) > 2
    assert all(p.dtype == numpy.float32 for p in gan.discriminator.parameters())


def test_cli_precision_is_recorded_and_kept_on_resume(tmp_path, capsys):
    # The ae verb: its lr is constant, so a finished run may be extended (a classifier's cosine
    # schedule ends at 0 and refuses more epochs).
    argv = ["train", "ae", "--device", "cpu", "--no-progress", "--out", str(tmp_path)]

    def run(*extra):
        main([*argv, *extra])
        return json.loads((tmp_path / "metrics.json").read_text())

    m1 = run("--epochs", "1", "--precision", "bf16-mixed")
    assert m1["precision"] == "bf16-mixed" and numpy.isfinite(m1["history"]["test_loss"][-1])
    m2 = run("--epochs", "2", "--resume")
    assert m2["precision"] == "bf16-mixed" and m2["epochs"] == 2
    assert m2["history"]["test_loss"][-1] < m1["history"]["test_loss"][-1]
    # Another --precision on --resume is a one-line usage error naming both (the run's settings).
    code, line = cli_error([*argv, "--epochs", "3", "--resume", "--precision", "16-mixed"], capsys)
    assert code == 2 and "--precision 16-mixed (checkpoint: bf16-mixed)" in line
