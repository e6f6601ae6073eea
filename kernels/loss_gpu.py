"""Fused losses on CuPy arrays: cross-entropy of logits (N, C) against int64 class indices, and
binary cross-entropy on logits, one kernel forward and one backward each.

The kernels are in ``kernels/cuda/loss.cu``, launched through :mod:`kernels.launch`. CuPy is
imported lazily, only when a launch happens.
"""

from __future__ import annotations

from typing import Any

from kernels import launch


def cross_entropy_forward(x: Any, target: Any, ignore_index: int) -> tuple[Any, Any]:
    """``(out, lse)``: out (2, N) holds each row's loss and its weight in the mean (1, 0 when
    ignored, N + 1 when its target is outside [0, C)); lse (N,) the rows' log-sum-exp."""
    cp = launch._cupy()
    n, classes = x.shape
    out = cp.empty((2, n), dtype=x.dtype)
    lse = cp.empty((n,), dtype=x.dtype)
    launch.launch(
        "loss.cu", "cross_entropy_forward", (x, target, out, lse), n, (classes, ignore_index)
    )
    return out, lse


def cross_entropy_reduce(out: Any, mean: bool) -> tuple[Any, Any]:
    """``(loss, aux)`` from :func:`cross_entropy_forward`'s out (2, N) in one single-thread
    launch (for a small N): loss () the mean or sum of the row losses, aux (2,) the count of
    rows in the mean and 1 if a target was out of range (else 0)."""
    cp = launch._cupy()
    loss = cp.empty((), dtype=out.dtype)
    aux = cp.empty((2,), dtype=out.dtype)
    launch.launch("loss.cu", "cross_entropy_reduce", (out, loss, aux), 1, (out.shape[1],),
                  flags=(mean,))  # fmt: skip
    return loss, aux


def cross_entropy_backward(
    x: Any, target: Any, lse: Any, gy: Any, count: Any, ignore_index: int, mean: bool
) -> Any:
    """gx (N, C) = (softmax(x) - onehot(target)) * gy (/ count for a mean) on the rows that
    count; gy and count are one-element device arrays (no host read)."""
    gx = launch._cupy().empty(x.shape, dtype=x.dtype)
    launch.launch(
        "loss.cu",
        "cross_entropy_backward",
        (x, target, lse, gy, count, gx),
        x.size,
        (x.shape[1], ignore_index),
        flags=(mean,),
    )
    return gx


def bce_logits_forward(x: Any, t: Any) -> Any:
    """Elementwise max(x, 0) - x t + log1p(exp(-|x|)), a new contiguous array."""
    cp = launch._cupy()
    y = cp.empty(x.shape, dtype=x.dtype)  # (before ascontiguousarray, which makes 0-d (1,))
    x, t = cp.ascontiguousarray(x), cp.ascontiguousarray(t)
    launch.launch("loss.cu", "bce_logits_forward", (x, t, y), x.size)
    return y


def bce_logits_backward(x: Any, t: Any, gy: Any, scale: float) -> Any:
    """gx = gy * scale * (sigmoid(x) - t); gy a one-element device array (the gradient of the
    mean, scale 1 / n, or of the sum, scale 1)."""
    cp = launch._cupy()
    gx = cp.empty(x.shape, dtype=x.dtype)  # (before ascontiguousarray, which makes 0-d (1,))
    x, t = cp.ascontiguousarray(x), cp.ascontiguousarray(t)
    launch.launch("loss.cu", "bce_logits_backward", (x, t, gy, gx), x.size, scalars=(scale,))
    return gx
