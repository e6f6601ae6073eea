"""Plots as PNG files, drawn with Pillow: `plot_curves` (training curves, one panel per group)
and `save_latent_plot` (codes projected to 2-D by PCA, one colour per class)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy

from .images import atomic_save, host_array

__all__ = ["plot_curves", "pca_2d", "save_latent_plot"]


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
    atomic_save(image, path, "PNG")


# -------------------------------------------------------------------------------------------
# Latent-space picture


def pca_2d(z: Any) -> numpy.ndarray:
    """Rows of z projected on their first two principal components (host float64 (N, 2))."""
    a = numpy.asarray(host_array(z), dtype=numpy.float64)
    a = a.reshape(a.shape[0], -1) - a.mean(axis=0)
    if a.shape[1] == 1:
        return numpy.concatenate([a, numpy.zeros_like(a)], axis=1)
    _, _, vt = numpy.linalg.svd(a, full_matrices=False)
    return a @ vt[:2].T


_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def save_latent_plot(
    z: Any, labels: Any, path: str | os.PathLike, size: int = 480, title: str = "latent space (PCA)"
) -> None:
    """Scatter of the 2-D PCA projection of codes `z`, one colour per class, as a PNG."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    xy = pca_2d(z)
    if labels is None:
        labels = numpy.zeros(len(xy), dtype=numpy.int64)
    labels = host_array(labels)
    if labels.shape != (len(xy),):
        raise ValueError(f"save_latent_plot: {len(xy)} codes but labels of shape {labels.shape}")
    margin, legend = 30, 60
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = numpy.where(hi - lo > 0, hi - lo, 1.0)
    pix = margin + (xy - lo) / span * (size - 2 * margin)
    pix[:, 1] = size - pix[:, 1]  # y grows upwards
    image = Image.new("RGB", (size + legend, size), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((margin, 8), title, fill="black", font=font)
    classes = numpy.unique(labels)
    for (px, py), lab in zip(pix, labels, strict=True):
        color = _PALETTE[int(numpy.searchsorted(classes, lab)) % len(_PALETTE)]
        draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=color)
    for i, lab in enumerate(classes):
        y = margin + 18 * i
        draw.ellipse([size + 10, y, size + 20, y + 10], fill=_PALETTE[i % len(_PALETTE)])
        draw.text((size + 26, y - 1), str(lab), fill="black", font=font)
    atomic_save(image, path)
