"""reports/tensorboard_figure.py: the README's picture of TensorBoard, read back from event
files with TensorBoard's own EventAccumulator and drawn by matplotlib."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "tensorboard_figure", ROOT / "reports" / "tensorboard_figure.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoothing_is_tensorboards_debiased_moving_average():
    fig = _module()
    values = np.array([1.0, 3.0, 2.0, 5.0])
    ema, out = 0.0, []
    for i, v in enumerate(values):
        ema = 0.6 * ema + 0.4 * v
        out.append(ema / (1 - 0.6 ** (i + 1)))
    np.testing.assert_allclose(fig.smooth(values), out)
    assert fig.smooth(values)[0] == 1.0  # debiased: the first point is itself
    np.testing.assert_allclose(fig.smooth(np.full(5, 2.5)), 2.5)


def test_event_files_become_one_picture_of_scalars_and_the_last_image(tmp_path):
    tbx = pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    fig = _module()
    writer = tbx.SummaryWriter(str(tmp_path / "run"))
    for step in range(1, 11):
        writer.add_scalar("step/loss_d", 1.0 / step, step)
        writer.add_scalar("lr", 1e-3, step)
    grid = np.zeros((3, 20, 30), np.float32)
    grid[:, :, 10:] = 1.0
    writer.add_image("samples", grid, 10)
    writer.close()

    scalars, image = fig.read_run(tmp_path / "run")
    assert sorted(scalars) == ["lr", "step/loss_d"]
    steps, values = scalars["step/loss_d"]
    np.testing.assert_array_equal(steps, np.arange(1, 11))
    np.testing.assert_allclose(values, 1.0 / np.arange(1, 11), rtol=1e-6)
    assert image[0] == 10 and image[1].shape[:2] == (20, 30)
    assert image[1][0, 0, 0] == 0 and image[1][0, 29, 0] == 255

    out = fig.main([str(tmp_path / "run"), "--out", str(tmp_path / "tb.png")])
    png = Image.open(out)
    assert png.format == "PNG" and png.size == (4 * 300, 230 + 30)  # one row of 4 panels
    with pytest.raises(SystemExit):
        fig.main(["--out", str(tmp_path / "x.png")])  # neither a run nor --train-gan
