"""The generative trainer base: train loop, outputs, histories, checkpoints and exact resume."""

from __future__ import annotations

import json

import numpy
import pytest
from noisy_regressor import NoisyRegressor

import engine
import generative.trainer as trainer_module
import layers as nn
import optimizers
from engine.data import DataLoader, TensorDataset
from generative.trainer import (
    Callback,
    NonFiniteLossError,
    Precision,
    Trainer,
    evaluating,
    frozen,
    resolve_device,
)


def _data(n=24, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(numpy.float32)
    return TensorDataset(x, (x @ rng.standard_normal((4, 4))).astype(numpy.float32))


def _weights(trainer):
    return {k: v.numpy().copy() for k, v in trainer.net.state_dict().items()}


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    expected = "cuda:0" if engine.cuda.is_available() else "cpu"
    assert str(resolve_device("auto")) == expected
    assert str(resolve_device(None)) == expected


def test_frozen_restores_each_flag():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net[1].bias.requires_grad_(False)  # frozen by the user: must stay frozen
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    flags = [p.requires_grad for p in net.parameters()]
    assert flags == [True, True, True, False]


def test_frozen_restores_flags_after_an_error():
    net = nn.Linear(2, 2)
    with pytest.raises(RuntimeError):
        with frozen(net):
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in net.parameters())


def test_evaluating_restores_modes_and_disables_grad():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    net[1].eval()  # mixed modes must come back as they were
    with evaluating(net):
        assert not net.training and not net[1].training
        assert net(engine.ones(1, 2)).grad_fn is None
    assert net.training and net[0].training and not net[1].training


def test_train_records_histories_and_writes_outputs(tmp_path):
    engine.manual_seed(0)
    trainer = NoisyRegressor(device="cpu", out_dir=tmp_path, progress=False)
    loader = DataLoader(_data(), batch_size=8, shuffle=True, seed=1)  # 3 batches per epoch
    history = trainer.fit(loader, 3)
    assert trainer.epoch == 3 and trainer.global_step == 9
    assert history["epoch"] == [1, 2, 3]
    assert len(history["loss"]) == 3 and all(numpy.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert history["sometimes"] == [1.0, 1.0, 1.0]  # mean over the steps that reported it
    assert len(history["seconds"]) == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "NoisyRegressor" and metrics["epochs"] == 3
    assert metrics["history"]["loss"] == pytest.approx(history["loss"])
    for name in (
        "samples.png",
        "checkpoint.npz",
        "samples/epoch_0001.png",
        "samples/epoch_0003.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert trainer.fit(loader, 3) is history and trainer.global_step == 9  # already there


def test_history_pads_missing_keys_with_none():
    trainer = NoisyRegressor(device="cpu", progress=False)
    trainer._record({"a": 1.0})
    trainer._record({"b": 2.0, "c": float("nan")})
    assert trainer.history == {
        "epoch": [0, 0],
        "a": [1.0, None],
        "b": [None, 2.0],
        "c": [None, None],
    }


def test_train_rejects_bad_epochs():
    trainer = NoisyRegressor(device="cpu", progress=False)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="epochs"):
            trainer.fit([], bad)


def test_base_class_names_what_is_missing():
    trainer = Trainer(device="cpu")
    with pytest.raises(NotImplementedError, match="train_step"):
        trainer.train_step(())
    with pytest.raises(NotImplementedError, match="sample"):
        trainer.sample(1)


def test_to_device_moves_every_field(device):
    trainer = NoisyRegressor(device=device, progress=False)
    x, y = trainer.to_device((engine.ones(2, 4), numpy.arange(2)))
    assert x.device == device and y.device == device
    assert trainer.net.weight.device == device


def test_resume_continues_bit_exactly(tmp_path):
    def run(epochs, resume_from=None, out_dir=None):
        engine.manual_seed(7)  # same init and same seed as the interrupted run
        trainer = NoisyRegressor(device="cpu", out_dir=out_dir, progress=False)
        loader = DataLoader(_data(), batch_size=8, shuffle=True, seed=3)
        if resume_from is not None:
            engine.manual_seed(999)  # whatever happens in between is overwritten by the load
            trainer.load_checkpoint(resume_from)
        trainer.fit(loader, epochs)
        return trainer

    straight = run(4)
    run(2, out_dir=tmp_path)
    resumed = run(4, resume_from=tmp_path / "checkpoint.npz")
    assert resumed.epoch == 4 and resumed.global_step == straight.global_step
    for k, w in _weights(straight).items():
        numpy.testing.assert_array_equal(_weights(resumed)[k], w)
    no_time = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert no_time(resumed.history) == no_time(straight.history)


def test_checkpoint_round_trip_restores_optimizer_state(tmp_path):
    engine.manual_seed(0)
    a = NoisyRegressor(device="cpu", progress=False)
    a.fit(DataLoader(_data(), batch_size=8), 1)
    a.save_checkpoint(tmp_path / "ckpt.npz")
    b = NoisyRegressor(device="cpu", progress=False)
    b.load_checkpoint(tmp_path / "ckpt.npz")
    assert (b.epoch, b.global_step) == (1, 3)
    for k, w in _weights(a).items():
        numpy.testing.assert_array_equal(_weights(b)[k], w)
    sa, sb = a.optimizers["net"].state_dict(), b.optimizers["net"].state_dict()
    for i, state in sa["state"].items():
        for name, value in state.items():
            numpy.testing.assert_array_equal(sb["state"][i][name], value)


def test_checkpoint_meta_is_stored_at_the_top_level(tmp_path):
    trainer = NoisyRegressor(device="cpu", progress=False)
    trainer.checkpoint_meta = {"task": "gan", "dataset": "digits"}
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    state = engine.load(tmp_path / "ckpt.npz")
    assert state["task"] == "gan" and state["dataset"] == "digits"
    assert state["model"] == "NoisyRegressor" and state["format"] == "tensortape-trainer"


def test_checkpoint_of_another_model_is_refused(tmp_path):
    class Other(NoisyRegressor):
        pass

    a = NoisyRegressor(device="cpu", progress=False)
    a.save_checkpoint(tmp_path / "ckpt.npz")
    with pytest.raises(ValueError, match="checkpoint is for a NoisyRegressor"):
        Other(device="cpu").load_checkpoint(tmp_path / "ckpt.npz")
    b = NoisyRegressor(device="cpu", progress=False)
    b.networks = {"net": b.net, "extra": nn.Linear(1, 1)}
    with pytest.raises(ValueError, match="networks"):
        b.load_checkpoint(tmp_path / "ckpt.npz")


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("start", trainer.epoch))

    def on_log(self, trainer, values):
        self.calls.append(("log", trainer.global_step, sorted(values)))

    def on_epoch_end(self, trainer, record):
        self.calls.append(("epoch", trainer.epoch, record["loss"]))

    def on_fit_end(self, trainer):
        self.calls.append(("end", trainer.epoch))


def test_callbacks_see_log_points_and_epochs():
    recorder = Recorder()
    trainer = NoisyRegressor(device="cpu", progress=False, callbacks=[recorder])
    trainer.log_every = 2
    history = trainer.fit(DataLoader(_data(), batch_size=8), 2)  # 3 steps an epoch
    logs = [c[1] for c in recorder.calls if c[0] == "log"]
    assert logs == [2, 3, 5, 6]  # every 2 steps, and at each epoch's end
    assert recorder.calls[0] == ("start", 0) and recorder.calls[-1] == ("end", 2)
    epochs = [c for c in recorder.calls if c[0] == "epoch"]
    assert [(e[1], e[2]) for e in epochs] == list(zip([1, 2], history["loss"]))


def test_losses_are_read_only_at_log_points(monkeypatch):
    """0-d Tensors from train_step stay unread (no device sync) between log points."""
    reads = []
    trainer = NoisyRegressor(device="cpu", progress=False)
    trainer.log_every = 10
    real_read = trainer_module._read_all
    monkeypatch.setattr(
        trainer_module, "_read_all", lambda v: reads.append(trainer.global_step) or real_read(v)
    )
    trainer.fit(DataLoader(_data(n=96), batch_size=8), 1)  # 12 steps
    assert reads == [10, 12]  # one read of all the pending losses per log point


def test_precision_policy_runs_every_backward_and_step():
    class Counting(Precision):
        def __init__(self):
            self.autocasts = self.backwards = self.steps = 0

        def autocast(self):
            self.autocasts += 1
            return super().autocast()

        def backward(self, loss):
            self.backwards += 1
            super().backward(loss)

        def step(self, optimizer):
            self.steps += 1
            super().step(optimizer)

        def state_dict(self):
            return {"steps": self.steps}

    policy = Counting()
    trainer = NoisyRegressor(device="cpu", progress=False, precision=policy)
    trainer.fit(DataLoader(_data(), batch_size=8), 2)
    assert (policy.autocasts, policy.backwards, policy.steps) == (6, 6, 6)
    assert trainer.state_dict()["precision"] == {"steps": 6}


def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_checkpoint(tmp_path):
    class Exploding(NoisyRegressor):
        def train_step(self, batch):
            out = super().train_step(batch)
            if self.global_step == 4:  # epoch 2, step 2
                out["loss"] = out["loss"] * float("nan")
            return out

    trainer = Exploding(device="cpu", out_dir=tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"'loss' is nan at epoch 2, step 2 \(global"):
        trainer.fit(DataLoader(_data(), batch_size=8), 3)
    assert engine.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1


def test_metrics_json_is_strict_json(tmp_path):
    trainer = NoisyRegressor(device="cpu", progress=False)
    trainer._record({"loss": float("inf")})
    trainer.epoch_metrics = lambda: {}
    trainer.config = lambda: {"lr": float("nan")}
    trainer.write_metrics(tmp_path / "metrics.json")
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["config"]["lr"] is None


def test_an_epoch_without_batches_is_an_error():
    trainer = NoisyRegressor(device="cpu", progress=False)
    loader = DataLoader(_data(n=24), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match=r"no batches \(batch size 32, 24 samples, the last"):
        trainer.fit(loader, 1)
    assert trainer.epoch == 0 and trainer.global_step == 0


def test_schedulers_step_per_epoch_and_are_checkpointed(tmp_path):
    trainer = NoisyRegressor(device="cpu", progress=False)
    opt = trainer.optimizers["net"]
    trainer.schedulers = {"lr": optimizers.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}
    trainer.fit(DataLoader(_data(), batch_size=8), 2)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    other = NoisyRegressor(device="cpu", progress=False)
    other.schedulers = {
        "lr": optimizers.lr_scheduler.StepLR(other.optimizers["net"], step_size=1, gamma=0.5)
    }
    other.load_checkpoint(tmp_path / "ckpt.npz")
    assert other.schedulers["lr"].last_epoch == 2


def test_version_1_checkpoints_with_modules_still_load(tmp_path):
    engine.manual_seed(0)
    a = NoisyRegressor(device="cpu", progress=False)
    a.fit(DataLoader(_data(), batch_size=8), 1)
    state = a.state_dict()
    state["modules"] = state.pop("networks")  # the version-1 layout
    del state["schedulers"], state["precision"]
    state["version"] = 1
    engine.save(state, tmp_path / "v1.npz")
    b = NoisyRegressor(device="cpu", progress=False)
    b.load_checkpoint(tmp_path / "v1.npz")
    for k, w in _weights(a).items():
        numpy.testing.assert_array_equal(_weights(b)[k], w)


def test_trainer_names_do_not_shadow_modules():
    """A Trainer fits networks; `train()`/`modules()` stay Module's words only."""
    trainer = NoisyRegressor(device="cpu", progress=False)
    assert not hasattr(trainer, "train") and not hasattr(trainer, "modules")
    assert trainer.networks == {"net": trainer.net}
