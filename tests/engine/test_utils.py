"""make_grid / save_image (torchvision semantics): engine.utils over dataio.images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import engine
from engine.utils import make_grid, save_image


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


def test_save_image_from_device(tmp_path, device):
    x = engine.tensor(
        np.linspace(0, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3), device=device
    )
    save_image(x, tmp_path / "d.png", padding=1)
    img = np.asarray(Image.open(tmp_path / "d.png"))
    expected = np.clip(make_grid(x.cpu(), padding=1).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img, expected.transpose(1, 2, 0))
    assert make_grid(x).device == "cpu"
