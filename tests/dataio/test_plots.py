"""dataio.plots: plot_curves (training curves as a PNG)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from dataio import plots as utils
from dataio.plots import plot_curves


def test_nice_ticks():
    ticks = utils._nice_ticks(0.23, 2.31)
    np.testing.assert_allclose(ticks, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    ticks = utils._nice_ticks(0.93, 0.975)
    assert ticks[0] <= 0.93 and ticks[-1] >= 0.975 and 4 <= len(ticks) <= 8
    np.testing.assert_allclose(utils._nice_ticks(3.0, 3.0), [2.4, 2.6, 2.8, 3.0, 3.2, 3.4, 3.6])


def test_group_of():
    assert utils._group_of("train_loss") == "loss"
    assert utils._group_of("test_accuracy") == "accuracy"
    assert utils._group_of("loss/train") == "loss"
    assert utils._group_of("lr") == "lr"


def test_finite_runs_leave_gaps():
    runs = utils._finite_runs([1.0, math.nan, 3.0, 4.0, math.inf])
    assert runs == [[(1, 1.0)], [(3, 3.0), (4, 4.0)]]


def _colour_columns(img: np.ndarray, colour) -> np.ndarray:
    mask = np.all(img == np.array(colour, np.uint8), axis=-1)
    return np.nonzero(mask.any(axis=0))[0]


def test_plot_curves_panels_and_lines(tmp_path):
    path = tmp_path / "curves.png"
    series = {
        "train_loss": [2.0, 1.0, 0.5, 0.4],
        "test_loss": [2.2, 1.4, 0.9, 0.8],
        "test_accuracy": [0.5, 0.7, 0.8, 0.85],
    }
    plot_curves(path, series, title="demo")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (utils._PANEL_H + 28, 2 * utils._PANEL_W, 3)
    blue, orange = utils._COLORS[0], utils._COLORS[1]
    blue_cols = _colour_columns(img, blue)
    orange_cols = _colour_columns(img, orange)
    # the loss panel (left) has both colours; the accuracy panel (right) only the first
    assert blue_cols.min() < utils._PANEL_W and blue_cols.max() > utils._PANEL_W
    assert orange_cols.size and orange_cols.max() < utils._PANEL_W
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_plot_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plot_curves(tmp_path / "a.png", {})
    with pytest.raises(ValueError, match="non-empty.*'loss': 0"):
        plot_curves(tmp_path / "a.png", {"loss": []})
    with pytest.raises(ValueError, match="panel 'loss' has no finite values"):
        plot_curves(tmp_path / "a.png", {"loss": [math.nan]})
    assert list(tmp_path.iterdir()) == []
