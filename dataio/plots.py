"""Plots as PNG files, drawn by matplotlib: `plot_curves` (training curves, one panel per group)
`save_latent_plot` (codes projected to 2-D by PCA, one colour per class, with a legend) and
`save_scatter` (named point sets).

matplotlib is imported inside the functions (never at `import engine`), and only its
object-oriented API is used: a `Figure` rendered by the Agg canvas, so no pyplot state, no GUI
backend and no `matplotlib.use` call that would change a user's own plotting.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy

from .files import atomic_write
from .images import host_array

__all__ = ["plot_curves", "curves_figure", "pca_2d", "save_latent_plot", "save_scatter", "group_of"]

PANEL_SIZE = (480, 350)  # pixels of one panel (at DPI)
DPI = 100
# A panel whose positive values span more than this ratio gets a log y axis.
LOG_SCALE_RATIO = 100.0


def _figure(width: int, height: int):
    from matplotlib.figure import Figure  # noqa: PLC0415  (lazy: `import engine` stays light)

    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _save(fig, path: str | os.PathLike) -> None:
    """The figure as a PNG of exactly its pixel size, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def group_of(name: str) -> str:
    """Panel of a series: 'loss/train' -> 'loss'; 'test_accuracy' -> 'accuracy'; 'lr' -> 'lr';
    every other name with 'loss' in it -> 'loss' ('loss_d', 'recon_loss')."""
    if "/" in name:
        return name.split("/", 1)[0]
    if "acc" in name:
        return "accuracy"
    if name in ("lr", "learning_rate") or name.endswith("_lr"):
        return "lr"
    if "loss" in name:
        return "loss"
    return name.rsplit("_", 1)[-1]


def _wants_log_scale(values: numpy.ndarray) -> bool:
    finite = values[numpy.isfinite(values)]
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > LOG_SCALE_RATIO)


def plot_curves(
    path: str | os.PathLike,
    series: dict[str, list[float | None]],
    title: str | None = None,
    xlabel: str = "epoch",
) -> None:
    """Line charts of per-epoch values as a PNG, one panel per group (`group_of`), side by side,
    each `PANEL_SIZE` pixels. x runs 1..len(values); None/NaN/inf leave gaps; a panel whose
    values span more than two decades is drawn on a log scale."""
    _save(curves_figure(series, title, xlabel), path)


def curves_figure(
    series: dict[str, list[float | None]], title: str | None = None, xlabel: str = "epoch"
):
    """The matplotlib `Figure` that `plot_curves` saves (for a notebook or more drawing)."""
    if not series or any(len(v) == 0 for v in series.values()):
        lengths = {k: len(v) for k, v in series.items()}
        raise ValueError(f"plot_curves needs at least one non-empty series, got lengths {lengths}")
    groups: dict[str, dict[str, numpy.ndarray]] = {}
    for name, values in series.items():
        array = numpy.array([math.nan if v is None else float(v) for v in values])
        groups.setdefault(group_of(name), {})[name] = array
    # losses first, learning rates last: the panels read from what is optimised to how
    order = {"loss": 0, "lr": 2}
    groups = dict(sorted(groups.items(), key=lambda item: order.get(item[0], 1)))
    for group, members in groups.items():
        if not any(numpy.isfinite(v).any() for v in members.values()):
            raise ValueError(f"plot_curves: panel {group!r} has no finite values")
    fig = _figure(PANEL_SIZE[0] * len(groups), PANEL_SIZE[1])
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (group, members) in zip(axes, groups.items()):
        for name, values in members.items():
            x = numpy.arange(1, len(values) + 1)
            ax.plot(x, values, marker="o" if len(values) <= 30 else None, markersize=3, label=name)
        if _wants_log_scale(numpy.concatenate(list(members.values()))):
            ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel(xlabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


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


def save_latent_plot(
    z: Any, labels: Any, path: str | os.PathLike, size: int = 480, title: str = "latent space (PCA)"
) -> None:
    """Scatter of the 2-D PCA projection of codes `z`, one colour per class with a legend, as a
    `size` x `size` PNG."""
    xy = pca_2d(z)
    labels = numpy.zeros(len(xy), numpy.int64) if labels is None else host_array(labels)
    if labels.shape != (len(xy),):
        raise ValueError(f"save_latent_plot: {len(xy)} codes but labels of shape {labels.shape}")
    points = {str(label): xy[labels == label] for label in numpy.unique(labels)}
    save_scatter(path, points, title, size, legend_title="class", xlabel="PC 1", ylabel="PC 2")


def save_scatter(
    path: str | os.PathLike,
    points: dict[str, Any],
    title: str | None = None,
    size: int = 480,
    legend_title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> None:
    """A `size` x `size` PNG scatter: each entry of `points` ((N, 2) array) in its own colour,
    named in the legend."""
    fig = _figure(size, size)
    ax = fig.subplots()
    for k, (name, xy) in enumerate(points.items()):
        xy = numpy.asarray(host_array(xy), dtype=numpy.float64).reshape(-1, 2)
        ax.scatter(xy[:, 0], xy[:, 1], s=8, color=f"C{k % 10}", label=name)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend(title=legend_title, fontsize="small", markerscale=1.5, loc="best")
    _save(fig, path)
