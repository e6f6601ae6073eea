"""make_grid / save_image (torchvision semantics) and plot_curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import engine
from engine import utils
from engine.utils import make_grid, plot_curves, save_image


def reference_grid(batch, nrow=8, padding=2, pad_value=0.0):
    """torchvision's make_grid loop, written out plainly, on a (B, 3, H, W) array."""
    b, c, h, w = batch.shape
    xmaps = min(nrow, b)
    ymaps = math.ceil(b / xmaps)
    height, width = h + padding, w + padding
    grid = np.full((c, height * ymaps + padding, width * xmaps + padding), pad_value, batch.dtype)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= b:
                break
            top, left = y * height + padding, x * width + padding
            grid[:, top : top + height - padding, left : left + width - padding] = batch[k]
            k += 1
    return grid


@pytest.mark.parametrize(
    "b, nrow, padding", [(5, 2, 2), (8, 8, 2), (7, 3, 0), (3, 8, 1), (4, 1, 3)]
)
def test_make_grid_matches_torchvision_layout(b, nrow, padding):
    batch = np.random.default_rng(b).random((b, 3, 4, 5)).astype(np.float32)
    grid = make_grid(batch, nrow=nrow, padding=padding, pad_value=0.25)
    np.testing.assert_array_equal(grid, reference_grid(batch, nrow, padding, 0.25))


def test_make_grid_shapes_and_grey_to_rgb():
    batch = np.random.default_rng(0).random((5, 1, 3, 4)).astype(np.float32)
    grid = make_grid(batch, nrow=2)
    assert grid.shape == (3, 3 * 5 + 2, 2 * 6 + 2)
    np.testing.assert_array_equal(grid[0], grid[2])
    np.testing.assert_array_equal(grid[1, 2:5, 2:6], batch[0, 0])
    np.testing.assert_array_equal(grid[1, 7:10, 8:12], batch[3, 0])
    assert make_grid(batch[0]).shape == (3, 3, 4)  # one image: no padding
    assert make_grid(batch[0, 0]).shape == (3, 3, 4)
    assert make_grid(np.zeros((2, 3, 3, 4))).shape == (3, 7, 14)


def test_make_grid_tensor_in_tensor_out():
    x = engine.tensor(np.ones((2, 1, 2, 2), np.float32), requires_grad=True)
    grid = make_grid(x, padding=1)
    assert isinstance(grid, engine.Tensor) and grid.shape == (3, 4, 7)
    assert grid.device == "cpu" and not grid.requires_grad
    assert grid.numpy().sum() == 3 * 8


def test_make_grid_normalize():
    batch = np.array([[[[-1.0, 1.0]]], [[[3.0, 5.0]]]], np.float32)  # (2, 1, 1, 2)
    g = make_grid(batch, normalize=True, padding=0)[0]
    np.testing.assert_allclose(g, [[0.0, 2 / 6, 4 / 6, 1.0]], rtol=1e-6)
    g = make_grid(batch, normalize=True, scale_each=True, padding=0)[0]
    np.testing.assert_allclose(g, [[0.0, 1.0, 0.0, 1.0]])
    g = make_grid(batch, normalize=True, value_range=(0, 4), padding=0)[0]
    np.testing.assert_allclose(g, [[0.0, 0.25, 0.75, 1.0]])
    flat = make_grid(np.full((2, 1, 1, 1), 3.0, np.float32), normalize=True, padding=0)
    np.testing.assert_array_equal(flat, 0.0)  # constant input: no division by zero


def test_make_grid_errors():
    with pytest.raises(ValueError, match=r"C in \(1, 3\), got shape \(2, 2, 4, 4\)"):
        make_grid(np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        make_grid(np.zeros(4))
    with pytest.raises(ValueError, match="nrow"):
        make_grid(np.zeros((2, 1, 2, 2)), nrow=0)


def test_save_image_pixels_follow_torchvision_rounding(tmp_path):
    torch = pytest.importorskip("torch")
    values = np.array([0.0, 0.2, 0.5, 1 / 255, 0.999, 1.0, 1.7, -0.3], np.float32)
    batch = values.reshape(2, 1, 2, 2)
    path = tmp_path / "out.png"
    save_image(engine.tensor(batch), path, nrow=2, padding=1, pad_value=1.0)
    img = np.asarray(Image.open(path))
    assert img.shape == (1 * 3 + 1, 2 * 3 + 1, 3) and img.dtype == np.uint8
    grid = torch.from_numpy(reference_grid(np.repeat(batch, 3, axis=1), 2, 1, 1.0))
    expected = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    np.testing.assert_array_equal(img, expected)
    assert img[1, 1, 0] == 0 and img[1, 2, 0] == 51 and img[2, 1, 0] == 128


def test_save_image_single_rgb_and_uint8_input(tmp_path):
    rgb = np.zeros((3, 2, 3), np.float32)
    rgb[0] = 1.0
    save_image(rgb, tmp_path / "red.png")
    img = np.asarray(Image.open(tmp_path / "red.png"))
    assert img.shape == (2, 3, 3)
    np.testing.assert_array_equal(img.reshape(-1, 3), [[255, 0, 0]] * 6)
    save_image(np.eye(3, dtype=np.float64), tmp_path / "eye.png")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "eye.png"))[..., 1], np.eye(3) * 255
    )


def test_save_image_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    save_image(np.zeros((1, 4, 4)), path)
    before = path.read_bytes()

    def broken(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_image(np.ones((1, 4, 4)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


# --------------------------------------------------------------------------------------------
# plot_curves


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


def test_save_image_from_device(tmp_path, device):
    x = engine.tensor(
        np.linspace(0, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3), device=device
    )
    save_image(x, tmp_path / "d.png", padding=1)
    img = np.asarray(Image.open(tmp_path / "d.png"))
    expected = np.clip(make_grid(x.cpu(), padding=1).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img, expected.transpose(1, 2, 0))
    assert make_grid(x).device == "cpu"
