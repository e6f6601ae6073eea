"""Run logs of the `train` verbs: --logger tensorboard|csv|none, metrics.csv surviving a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tensortape.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_gan_run_writes_tensorboard_scalars_images_settings_and_curves(tmp_path):
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    out = tmp_path / "gan"
    main(["train", "gan", "--epochs", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    history = json.loads((out / "metrics.json").read_text())["history"]
    acc = ea.EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    numbers = [k for k, v in history.items() if k != "epoch" and any(x is not None for x in v)]
    assert {f"epoch/{k}" for k in numbers} <= scalars
    assert {"lr/generator", "lr/discriminator"} & scalars or "lr" in scalars
    assert [e.value for e in acc.Scalars("epoch")] == [1.0, 2.0]
    assert len(acc.Images("samples")) == 2
    # Step counts: every scalar at the global step; epoch tags and the grid at each epoch's end,
    # step tags every 20 steps of an epoch and at its end (1,438 digits: 22 batches of 64).
    per_epoch = json.loads((out / "metrics.json").read_text())["steps"] // 2
    assert per_epoch == 1438 // 64
    ends = [per_epoch, 2 * per_epoch]
    points = sorted({e * per_epoch + k for e in (0, 1) for k in (20, per_epoch)})
    for tag in scalars:
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == (points if tag.startswith(("step/", "lr")) else ends), tag
    assert [e.step for e in acc.Images("samples")] == ends
    grid = acc.Images("samples")[-1]  # 64 digits in rows of 8, upscaled x4 as samples.png
    assert (grid.width, grid.height) == (8 * 34 + 2, 8 * 34 + 2)
    settings = acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"loss": "bce"' in settings and '"task": "gan"' in settings
    assert [int(r["epoch"]) for r in _rows(out / "metrics.csv")] == [1, 2]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_logger_none_writes_no_run_logs(tmp_path):
    out = tmp_path / "ae"
    main(["train", "ae", "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]
         + ["--logger", "none"])  # fmt: skip
    assert not (out / "metrics.csv").exists() and not list(out.glob("events.out.tfevents.*"))
    assert (out / "metrics.json").exists() and (out / "curves.png").exists()


def test_metrics_csv_survives_a_kill_mid_run_and_resume_continues_it(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tensortape", "train", "classifier", "--model", "mlp"]
    cmd += ["--device", "cpu", "--no-progress", "--out", str(out), "--logger", "csv"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd + ["--epochs", "200"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "checkpoint.npz").exists() and len(_rows(out / "metrics.csv")) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    rows = _rows(out / "metrics.csv")
    assert 1 <= len(rows) < 200
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["test_accuracy"]) <= 1 for r in rows)

    # --resume continues the same CSV: the rows past the checkpoint's epoch (a kill between the
    # row and the checkpoint) are dropped, then one row per epoch, none twice.
    total = len(rows) + 2
    done = subprocess.run(cmd + ["--epochs", str(total), "--resume"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    resumed = _rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in resumed] == list(range(1, total + 1))
    steps = [int(r["step"]) for r in resumed]
    assert steps == sorted(set(steps)) and steps[0] > 0
    assert resumed[: len(rows) - 1] == rows[: len(rows) - 1]  # the history before is kept as is
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history["epoch"] == list(range(1, total + 1))
    assert [float(r["train_loss"]) for r in resumed] == pytest.approx(history["train_loss"])
