"""Pictures: `make_grid` / `save_image` (torchvision semantics) and `plot_curves` (Pillow only).

All PNGs are written atomically (temp file in the same directory, then renamed).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy

from .files import atomic_write
from .tensor import Tensor, as_tensor

__all__ = ["make_grid", "save_image", "plot_curves"]


def _host(x: Any) -> tuple[numpy.ndarray, bool]:
    """(NumPy array, whether `x` was a Tensor) for a Tensor, NumPy or CuPy array."""
    is_tensor = isinstance(x, Tensor)
    array = x.detach().array if is_tensor else x
    if not isinstance(array, numpy.ndarray):
        array = array.get() if hasattr(array, "get") else numpy.asarray(array)
    return array, is_tensor


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


def _grid_array(
    tensor, nrow, padding, normalize, value_range, scale_each, pad_value
) -> tuple[numpy.ndarray, bool]:
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    array, is_tensor = _host(tensor)
    batch = _to_batch(array)
    if normalize:
        batch = _normalize(batch, value_range, scale_each)
    if batch.shape[0] == 1:
        return batch[0], is_tensor
    return _grid(batch, nrow, padding, pad_value), is_tensor


def make_grid(
    tensor,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
):
    """Tile a batch of images into one (3, H', W') image, as `torchvision.utils.make_grid`.

    `nrow` images per row; grey images are repeated to 3 channels; a single image is returned
    unpadded. Returns a cpu Tensor for Tensor input, else a NumPy array.
    """
    grid, is_tensor = _grid_array(
        tensor, nrow, padding, normalize, value_range, scale_each, pad_value
    )
    return as_tensor(grid) if is_tensor else grid


def _atomic_save(image, path: str | os.PathLike, format: str | None = None) -> None:
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

    grid, _ = _grid_array(tensor, nrow, padding, normalize, value_range, scale_each, pad_value)
    pixels = numpy.clip(grid * 255 + 0.5, 0, 255).astype(numpy.uint8).transpose(1, 2, 0)
    _atomic_save(Image.fromarray(numpy.ascontiguousarray(pixels)), path, format)


# --------------------------------------------------------------------------------------------
# Training curves

_PANEL_W, _PANEL_H = 480, 350
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 62, 16, 44, 44
_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]  # fmt: skip


def _group_of(name: str) -> str:
    """Panel of a series: 'loss/train' -> 'loss', 'train_loss' -> 'loss', 'lr' -> 'lr'."""
    if "/" in name:
        return name.split("/", 1)[0]
    return name.rsplit("_", 1)[-1]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> numpy.ndarray:
    """About `count` round tick values (steps of 1, 2 or 5 x 10^k) covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return numpy.arange(round((stop - start) / step) + 1) * step + start


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _finite_runs(values: list[float]) -> list[list[tuple[int, float]]]:
    """Split (epoch, value) points into runs of finite values: a NaN or inf leaves a gap."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if math.isfinite(v):
            runs[-1].append((i + 1, v))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _draw_panel(draw, font, origin: tuple[int, int], group: str, series: dict, xlabel: str):
    ox, oy = origin
    left, top = ox + _MARGIN_L, oy + _MARGIN_T
    right, bottom = ox + _PANEL_W - _MARGIN_R, oy + _PANEL_H - _MARGIN_B
    values = numpy.concatenate([numpy.asarray(v, float) for v in series.values()])
    finite = values[numpy.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"plot_curves: panel {group!r} has no finite values")
    yticks = _nice_ticks(float(finite.min()), float(finite.max()))
    n = max(len(v) for v in series.values())
    xticks = _nice_ticks(1, max(n, 2), count=min(max(n - 1, 1), 6))
    x0, x1 = 1.0, float(max(n, 2))
    xticks = xticks[(xticks >= x0) & (xticks <= x1)]

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (right - left),
                bottom - (y - yticks[0]) / (yticks[-1] - yticks[0]) * (bottom - top))  # fmt: skip

    draw.text((ox + _PANEL_W / 2, oy + 8), group, fill="black", font=font, anchor="mt")
    for y in yticks:
        _, yy = px(x0, y)
        draw.line([(left, yy), (right, yy)], fill=(230, 230, 230))
        draw.text((left - 6, yy), _fmt(y), fill="black", font=font, anchor="rm")
    for x in xticks:
        xx, _ = px(x, yticks[0])
        draw.line([(xx, bottom), (xx, bottom + 4)], fill="black")
        draw.text((xx, bottom + 6), str(int(x)), fill="black", font=font, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, bottom + 24), xlabel, fill="black", font=font, anchor="mt")
    for k, vals in enumerate(series.values()):
        color = _COLORS[k % len(_COLORS)]
        for run in _finite_runs(vals):
            points = [px(x, y) for x, y in run]
            if len(points) > 1:
                draw.line(points, fill=color, width=2, joint="curve")
            if len(vals) <= 30:  # markers only while they stay readable
                for x, y in points:
                    draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=color)
    _draw_legend(draw, font, (left, oy + 28), list(series))


def _draw_legend(draw, font, origin: tuple[float, float], names: list[str]) -> None:
    """One row above the plot: a colour swatch and the name of each series."""
    x, y = origin
    for k, name in enumerate(names):
        color = _COLORS[k % len(_COLORS)]
        draw.line([(x, y), (x + 18, y)], fill=color, width=3)
        draw.text((x + 23, y), name, fill="black", font=font, anchor="lm")
        x += 23 + draw.textlength(name, font=font) + 16


def plot_curves(
    path: str | os.PathLike,
    series: dict[str, list[float]],
    title: str | None = None,
    xlabel: str = "epoch",
) -> None:
    """Draw line charts of per-epoch values into a PNG, one panel per group, side by side.

    A series' group is the part before '/' ('loss/train'), else after the last '_' ('test_loss',
    'test_accuracy'), so losses share one panel and accuracies another. x runs 1..len(values);
    non-finite values leave gaps.
    """
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    if not series or any(len(v) == 0 for v in series.values()):
        lengths = {k: len(v) for k, v in series.items()}
        raise ValueError(f"plot_curves needs at least one non-empty series, got lengths {lengths}")
    groups: dict[str, dict[str, list[float]]] = {}
    for name, values in series.items():
        groups.setdefault(_group_of(name), {})[name] = [float(v) for v in values]
    title_h = 28 if title else 0
    image = Image.new("RGB", (_PANEL_W * len(groups), _PANEL_H + title_h), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    if title:
        big = ImageFont.load_default(size=16)
        draw.text((image.width / 2, 8), title, fill="black", font=big, anchor="mt")
    for k, (group, members) in enumerate(groups.items()):
        _draw_panel(draw, font, (k * _PANEL_W, title_h), group, members, xlabel)
    _atomic_save(image, path, "PNG")
