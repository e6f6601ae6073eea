"""dataio.images' sample grids for people: nearest-neighbour upscaling by an integer factor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dataio.images import legible_scale, save_grid, save_image, upscale


def test_upscale_repeats_each_pixel_into_a_block():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    y = upscale(x, 3)
    assert y.shape == (2, 1, 6, 9)
    np.testing.assert_array_equal(y, x.repeat(3, axis=2).repeat(3, axis=3))
    np.testing.assert_array_equal(y[..., ::3, ::3], x)  # no interpolation: the same values
    assert upscale(x, 1) is x
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="scale must be a positive integer"):
            upscale(x, bad)


@pytest.mark.parametrize(
    ("h", "w", "scale"), [(8, 8, 4), (28, 28, 2), (32, 32, 1), (64, 64, 1), (8, 28, 4), (5, 5, 7)]
)
def test_legible_scale_makes_the_shorter_side_at_least_32(h, w, scale):
    assert legible_scale(h, w) == scale
    assert min(h, w) * scale >= 32 and (scale == 1 or min(h, w) * (scale - 1) < 32)


def test_save_grid_upscales_cells_and_clips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 1.5, (6, 1, 8, 8)).astype(np.float32)
    save_grid(x, tmp_path / "grid.png", nrow=3)
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2)  # 2 rows x 3 cells of 8 x4, padding 2
    # The same picture as torchvision's save_image of the clipped, upscaled batch.
    save_image(np.clip(x, 0, 1).repeat(4, axis=2).repeat(4, axis=3), tmp_path / "ref.png", nrow=3)
    np.testing.assert_array_equal(grid, np.asarray(Image.open(tmp_path / "ref.png").convert("L")))
    cell = grid[2:34, 2:34]  # the first image: 4x4 blocks of one grey each
    np.testing.assert_array_equal(cell, np.kron(cell[::4, ::4], np.ones((4, 4), np.uint8)))
    np.testing.assert_array_equal(
        cell[::4, ::4], np.clip(np.clip(x[0, 0], 0, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
    )
    save_grid(rng.uniform(0, 1, (4, 1, 28, 28)), tmp_path / "mnist.png", nrow=2)
    assert Image.open(tmp_path / "mnist.png").size == (2 * 58 + 2, 2 * 58 + 2)  # MNIST x2
    with pytest.raises(ValueError, match=r"expected images of shape \(B, C, H, W\)"):
        save_grid(x[0], tmp_path / "bad.png")
