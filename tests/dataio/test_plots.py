"""dataio.plots: training curves and the latent scatter through matplotlib, as PNG files."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataio import plots
from dataio.plots import curves_figure, group_of, plot_curves, save_latent_plot

ROOT = Path(__file__).resolve().parents[2]
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1


def _colour_columns(img: np.ndarray, colour) -> np.ndarray:
    mask = np.all(img == np.array(colour, np.uint8), axis=-1)
    return np.nonzero(mask.any(axis=0))[0]


def test_group_of():
    assert group_of("train_loss") == "loss"
    assert group_of("loss_d") == "loss"
    assert group_of("test_accuracy") == "accuracy"
    assert group_of("loss/train") == "loss"
    assert group_of("lr") == "lr"


def test_plot_curves_is_a_png_with_one_panel_per_group(tmp_path):
    path = tmp_path / "curves.png"
    series = {
        "train_loss": [2.0, 1.0, 0.5, 0.4],
        "test_loss": [2.2, 1.4, 0.9, 0.8],
        "test_accuracy": [0.5, 0.7, 0.8, 0.85],
    }
    plot_curves(path, series, title="demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(path).convert("RGB"))
    w, h = plots.PANEL_SIZE
    assert img.shape == (h, 2 * w, 3)
    blue_cols, orange_cols = _colour_columns(img, BLUE), _colour_columns(img, ORANGE)
    # the loss panel (left) has both series; the accuracy panel (right) only its first colour
    assert blue_cols.min() < w and blue_cols.max() > w
    assert orange_cols.size and orange_cols.max() < w
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temp file left


def test_plot_curves_log_scale_when_values_span_decades():
    fig = curves_figure({"loss": [10.0, 1.0, 0.01, None], "accuracy": [0.1, 0.5, 0.9, 0.95]})
    loss, acc = fig.axes
    assert loss.get_yscale() == "log" and acc.get_yscale() == "linear"
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["loss"]


def test_plot_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plot_curves(tmp_path / "a.png", {})
    with pytest.raises(ValueError, match="non-empty.*'loss': 0"):
        plot_curves(tmp_path / "a.png", {"loss": []})
    with pytest.raises(ValueError, match="panel 'loss' has no finite values"):
        plot_curves(tmp_path / "a.png", {"loss": [math.nan]})
    assert list(tmp_path.iterdir()) == []


def test_latent_plot_colours_and_legend(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    z = rng.standard_normal((90, 4)) + labels[:, None] * 4.0
    save_latent_plot(z, labels, tmp_path / "latent.png", size=300)
    img = np.asarray(Image.open(tmp_path / "latent.png").convert("RGB"))
    assert img.shape == (300, 300, 3)
    for colour in [BLUE, ORANGE, (44, 160, 44)]:
        assert (img == colour).all(-1).sum() > 20, colour


def test_import_engine_does_not_import_matplotlib():
    code = "import sys, engine, engine.utils, dataio.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_no_hand_drawn_plots_remain():
    """Curves and scatters are matplotlib's: no Pillow drawing code left in the project."""
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("engine", "dataio", "generative", "tensortape", "reports", "examples")
        for p in (ROOT / folder).rglob("*.py")
        if "ImageDraw" in p.read_text()
    ]
    assert offenders == []
