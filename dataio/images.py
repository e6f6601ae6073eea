"""Image files: `make_grid` / `save_image` with torchvision's semantics, on host arrays.

They take NumPy arrays, CuPy arrays or anything with `__array__` (an engine.Tensor), and write
8-bit images with Pillow atomically (temp file in the same directory, then renamed).
`engine.utils` offers the same two functions to tensor code (make_grid then returns a Tensor).
`save_grid` is the sample grid for people: clipped to [0, 1] and each cell upscaled by nearest
neighbour (an integer factor) so that 8x8 digits and 28x28 MNIST digits are legible.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy

from .files import atomic_write

__all__ = ["make_grid", "save_image", "save_grid", "upscale", "legible_scale", "atomic_save"]

#: The shorter side a sample grid's cells get at least (save_grid): 8x8 digits x4, MNIST x2.
LEGIBLE_CELL = 32


def host_array(x: Any) -> numpy.ndarray:
    """A NumPy array of `x`: a NumPy or CuPy array, or anything with `__array__` (a Tensor)."""
    if isinstance(x, numpy.ndarray):
        return x
    return x.get() if hasattr(x, "get") else numpy.asarray(x)


def _to_batch(array: numpy.ndarray) -> numpy.ndarray:
    """(H,W), (C,H,W) or (B,C,H,W) with 1 or 3 channels -> float (B,3,H,W) as torchvision does."""
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(
            f"expected an image of shape (H, W), (C, H, W) or (B, C, H, W) with C in (1, 3), "
            f"got shape {tuple(array.shape)}"
        )
    if not numpy.issubdtype(array.dtype, numpy.floating):
        array = array.astype(numpy.float32)
    if array.shape[1] == 1:
        array = numpy.repeat(array, 3, axis=1)
    return array


def _normalize(batch: numpy.ndarray, value_range, scale_each: bool) -> numpy.ndarray:
    """Map `value_range` (default: the min and max, per image if `scale_each`) onto [0, 1]."""
    if value_range is not None:
        low, high = value_range
        batch = numpy.clip(batch, low, high)
    elif scale_each:
        low = batch.min(axis=(1, 2, 3), keepdims=True)
        high = batch.max(axis=(1, 2, 3), keepdims=True)
    else:
        low, high = batch.min(), batch.max()
    span = numpy.maximum(numpy.asarray(high, batch.dtype) - low, 1e-5)
    return ((batch - low) / span).astype(batch.dtype)


def _grid(batch: numpy.ndarray, nrow: int, padding: int, pad_value: float) -> numpy.ndarray:
    """Tile (B,C,H,W) into (C, rows*(H+p)+p, cols*(W+p)+p), row-major, unused cells = pad_value."""
    b, c, h, w = batch.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    cells = numpy.full((rows * cols, c, h + padding, w + padding), pad_value, batch.dtype)
    cells[:b, :, padding:, padding:] = batch
    grid = cells.reshape(rows, cols, c, h + padding, w + padding).transpose(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + padding), cols * (w + padding))
    return numpy.pad(grid, ((0, 0), (0, padding), (0, padding)), constant_values=pad_value)


def make_grid(
    tensor,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
):
    """Tile a batch of images into one (3, H', W') NumPy image, as `torchvision.utils.make_grid`.

    `nrow` images per row; grey images are repeated to 3 channels; a single image is returned
    unpadded.
    """
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    batch = _to_batch(host_array(tensor))
    if normalize:
        batch = _normalize(batch, value_range, scale_each)
    if batch.shape[0] == 1:
        return batch[0]
    return _grid(batch, nrow, padding, pad_value)


def atomic_save(image, path: str | os.PathLike, format: str | None = None) -> None:
    """Save a Pillow image to `path` atomically (format from the suffix, PNG by default)."""
    from PIL import Image  # noqa: PLC0415

    path = Path(path)
    fmt = format or Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_write(path) as f:
        image.save(f, format=fmt)


def save_image(
    tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
    format: str | None = None,
) -> None:
    """Write `make_grid(tensor, ...)` as an 8-bit image (PNG unless the suffix says otherwise).

    Values are taken in [0, 1]: pixel = clamp(value * 255 + 0.5, 0, 255) truncated to uint8.
    """
    from PIL import Image  # noqa: PLC0415

    grid = make_grid(tensor, nrow, padding, normalize, value_range, scale_each, pad_value)
    pixels = numpy.clip(grid * 255 + 0.5, 0, 255).astype(numpy.uint8).transpose(1, 2, 0)
    atomic_save(Image.fromarray(numpy.ascontiguousarray(pixels)), path, format)


def upscale(images, scale: int) -> numpy.ndarray:
    """Nearest-neighbour upscaling of (..., H, W) images by an integer `scale`: each pixel
    becomes a `scale` x `scale` block (no interpolation, so no blur and no new grey levels)."""
    if not isinstance(scale, (int, numpy.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    array = host_array(images)
    if array.ndim < 2:
        raise ValueError(f"expected images of shape (..., H, W), got shape {array.shape}")
    if scale == 1:
        return array
    *lead, h, w = array.shape
    blocks = numpy.broadcast_to(array[..., :, None, :, None], (*lead, h, scale, w, scale))
    return blocks.reshape(*lead, h * scale, w * scale)


def legible_scale(height: int, width: int, cell: int = LEGIBLE_CELL) -> int:
    """The smallest integer factor that makes an image's shorter side at least `cell` pixels."""
    return max(1, math.ceil(cell / max(1, min(height, width))))


def save_grid(
    images,
    path: str | os.PathLike,
    nrow: int = 8,
    cell: int = LEGIBLE_CELL,
    pad_value: float = 0.0,
) -> None:
    """A sample grid for people: `images` (B, C, H, W) clipped to [0, 1], each upscaled by
    `legible_scale(H, W, cell)` (nearest neighbour), tiled `nrow` a row with 2-pixel padding."""
    batch = host_array(images)
    if batch.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got shape {batch.shape}")
    batch = numpy.clip(batch, 0.0, 1.0)
    batch = upscale(batch, legible_scale(*batch.shape[-2:], cell=cell))
    save_image(batch, path, nrow=nrow, pad_value=pad_value)
