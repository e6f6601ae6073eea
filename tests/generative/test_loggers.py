"""Run logs of the Trainer: TensorBoard event files (read back with TensorBoard's own
EventAccumulator), metrics.csv, resume without duplicated steps, a user's SummaryWriter."""

from __future__ import annotations

import csv
import shutil

import numpy
import pytest
from noisy_regressor import NoisyRegressor

import engine
from engine.data import DataLoader, TensorDataset
from generative.loggers import CSVLogger, TensorBoardLogger, make_loggers
from generative.trainer import Callback, MixedPrecision, make_precision

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _data(n=24, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(numpy.float32)
    return TensorDataset(x, (x @ rng.standard_normal((4, 4))).astype(numpy.float32))


EPOCH_TAGS = {"epoch/loss", "epoch/sometimes", "epoch/lr", "epoch/seconds", "epoch"}


def _events(log_dir):
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fit(out, epochs, logger="tensorboard", resume_from=None):
    trainer = NoisyRegressor(device="cpu", seed=0, progress=False, out_dir=out, logger=logger)
    trainer.log_every = 2
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    loader = DataLoader(_data(), batch_size=8, shuffle=True, seed=0)  # 3 steps an epoch
    trainer.fit(loader, epochs)
    return trainer


def test_tensorboard_scalars_images_and_settings(tmp_path):
    trainer = _fit(tmp_path, 3)
    acc = _events(tmp_path)
    tags = acc.Tags()
    assert EPOCH_TAGS | {"step/loss", "step/sometimes", "lr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("epoch/loss")] == [3, 6, 9]  # indexed by global step
    assert [e.value for e in acc.Scalars("epoch")] == [1.0, 2.0, 3.0]
    # log points: every 2 steps and each epoch's end (the epoch's running means)
    assert [e.step for e in acc.Scalars("step/loss")] == [2, 3, 5, 6, 8, 9]
    numpy.testing.assert_allclose(
        [e.value for e in acc.Scalars("epoch/loss")], trainer.history["loss"], rtol=1e-6
    )
    assert [e.value for e in acc.Scalars("epoch/lr")] == pytest.approx([1e-2] * 3)
    images = acc.Images("samples")
    assert [e.step for e in images] == [3, 6, 9]
    assert images[0].width == images[0].height  # 64 cells of 2x2 in 8 rows of 8
    assert "settings/text_summary" in tags["tensors"]
    assert b"NoisyRegressor" in acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0]


def test_csv_one_row_per_epoch_with_lr(tmp_path):
    trainer = _fit(tmp_path, 3, logger="csv")
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [3, 6, 9]
    numpy.testing.assert_allclose([float(r["loss"]) for r in rows], trainer.history["loss"])
    assert [float(r["lr"]) for r in rows] == [1e-2] * 3
    assert not list(tmp_path.glob("events.out.tfevents.*"))  # csv only


def test_resume_appends_without_duplicating_steps(tmp_path):
    """A run killed after epoch 3 logged, with its checkpoint still at epoch 2: resuming
    from that checkpoint drops the CSV row of epoch 3 and TensorBoard purges its steps."""
    run = tmp_path / "run"
    _fit(run, 2)
    shutil.copy(run / "checkpoint.npz", tmp_path / "epoch2.npz")
    straight = _fit(run, 3, resume_from=run / "checkpoint.npz")  # logs epoch 3 ...
    shutil.copy(tmp_path / "epoch2.npz", run / "checkpoint.npz")  # ... but "dies" before saving
    resumed = _fit(run, 4, resume_from=run / "checkpoint.npz")
    rows = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[2]["loss"]) == pytest.approx(straight.history["loss"][2])
    numpy.testing.assert_allclose([float(r["loss"]) for r in rows], resumed.history["loss"])
    acc = _events(run)
    steps = [e.step for e in acc.Scalars("epoch/loss")]
    assert steps == [3, 6, 9, 12]
    numpy.testing.assert_allclose(
        [e.value for e in acc.Scalars("epoch/loss")], resumed.history["loss"], rtol=1e-6
    )
    assert [e.step for e in acc.Images("samples")] == [3, 6, 9, 12]


def test_a_users_summary_writer(tmp_path):
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "mine"))
    trainer = NoisyRegressor(device="cpu", seed=0, progress=False, logger=writer)
    trainer.fit(DataLoader(_data(), batch_size=8), 2)
    writer.add_scalar("after", 1.0, 0)  # still open: the trainer flushes, never closes it
    writer.close()
    acc = _events(tmp_path / "mine")
    assert [e.step for e in acc.Scalars("epoch/loss")] == [3, 6]
    assert "after" in acc.Tags()["scalars"]


def test_logs_only_on_the_main_process(tmp_path, monkeypatch):
    monkeypatch.setattr(NoisyRegressor, "is_main_process", property(lambda self: False))
    _fit(tmp_path, 1)
    assert list(tmp_path.iterdir()) == []


def test_make_loggers_choices_and_errors(tmp_path, monkeypatch):
    assert make_loggers(None, tmp_path) == [] and make_loggers("none", tmp_path) == []
    assert [type(c) for c in make_loggers("csv", tmp_path)] == [CSVLogger]
    kinds = [type(c) for c in make_loggers("tensorboard", tmp_path)]
    assert kinds == [TensorBoardLogger, CSVLogger]
    assert [type(c) for c in make_loggers("auto", tmp_path)] == kinds
    mine = Callback()
    assert make_loggers(mine, tmp_path) == [mine]
    with pytest.raises(ValueError, match="give out_dir"):
        make_loggers("csv", None)
    with pytest.raises(ValueError, match="logger must be"):
        NoisyRegressor(device="cpu", logger="tensorbord")
    import generative.loggers as loggers

    monkeypatch.setattr(loggers, "tensorboard_available", lambda: False)
    assert [type(c) for c in make_loggers("auto", tmp_path)] == [CSVLogger]
    with pytest.raises(RuntimeError, match="pip install tensorboardX"):
        make_loggers("tensorboard", tmp_path)


def test_curves_png_from_the_history(tmp_path):
    from PIL import Image

    from dataio.plots import PANEL_SIZE

    _fit(tmp_path, 2, logger="none")
    image = Image.open(tmp_path / "curves.png")
    assert image.format == "PNG"
    # panels: loss, sometimes, lr
    assert image.size == (3 * PANEL_SIZE[0], PANEL_SIZE[1])


def test_grad_scale_is_logged_under_16_mixed_only(tmp_path):
    """`amp/grad_scale` at each log point is the scaler's scale after that step: an overflowing
    start (2**60: float16 gradients turn inf) halves it on every skipped step, as logged; a
    float32 or bf16-mixed run (no scaler) logs no such scalar."""
    scales = {}

    class Recorder(Callback):
        def on_log(self, trainer, values):
            scales[trainer.global_step] = trainer.precision.scaler.get_scale()

    scaler = engine.amp.GradScaler(init_scale=2.0**60, growth_interval=1000)
    trainer = NoisyRegressor(
        device="cpu", seed=0, progress=False, out_dir=tmp_path / "fp16", logger="tensorboard",
        precision=MixedPrecision("float16", scaler=scaler), callbacks=[Recorder()],
    )  # fmt: skip
    trainer.log_every = 1
    trainer.fit(DataLoader(_data(), batch_size=8), 2)  # 6 steps
    logged = {e.step: e.value for e in _events(tmp_path / "fp16").Scalars("amp/grad_scale")}
    assert logged == scales and len(logged) == 6
    assert logged[1] < 2.0**60  # the first step overflowed, was skipped and backed off
    assert min(logged.values()) < max(logged.values())
    for name in ("32", "bf16-mixed"):
        t = NoisyRegressor(device="cpu", seed=0, progress=False, out_dir=tmp_path / name,
                           logger="tensorboard", precision=make_precision(name))  # fmt: skip
        t.fit(DataLoader(_data(), batch_size=8), 1)
        assert "amp/grad_scale" not in _events(tmp_path / name).Tags()["scalars"]
