"""Leaky ReLU, ReLU's, tanh's and sigmoid's backwards and sigmoid on CuPy arrays, one kernel
each (``kernels/cuda/activation.cu``).

CuPy is imported lazily, only when a launch happens.
"""

from __future__ import annotations

from typing import Any

import numpy

from kernels import launch


def leaky_relu_forward(x: Any, slope: float) -> Any:
    """y = x > 0 ? x : slope x, a new contiguous array of x's shape."""
    cp = launch._cupy()
    y = cp.empty(x.shape, dtype=x.dtype)  # (before ascontiguousarray, which makes 0-d (1,))
    xc = cp.ascontiguousarray(x)
    launch.launch("activation.cu", "leaky_relu_forward", (xc, y), x.size, scalars=(slope,))
    return y


def leaky_relu_backward(y: Any, gy: Any, slope: float) -> Any:
    """gx = y > 0 ? gy : slope gy from the forward's output (0 <= slope; ReLU at 0)."""
    cp = launch._cupy()
    gx = cp.empty(y.shape, dtype=y.dtype)
    y, gy = cp.ascontiguousarray(y), cp.ascontiguousarray(gy)
    launch.launch("activation.cu", "leaky_relu_backward", (y, gy, gx), y.size, scalars=(slope,))
    return gx


def _from_output(name: str, y: Any, gy: Any) -> Any:
    """gx of an activation whose backward reads only its output y: kernel ``name``."""
    cp = launch._cupy()
    gx = cp.empty(y.shape, dtype=y.dtype)
    y, gy = cp.ascontiguousarray(y), cp.ascontiguousarray(gy)
    launch.launch("activation.cu", name, (y, gy, gx), y.size)
    return gx


def tanh_backward(y: Any, gy: Any) -> Any:
    """gx = gy (1 - y^2) from tanh's output y."""
    return _from_output("tanh_backward", y, gy)


def sigmoid_backward(y: Any, gy: Any) -> Any:
    """gx = gy y (1 - y) from sigmoid's output y."""
    return _from_output("sigmoid_backward", y, gy)


def sigmoid_forward(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), a new contiguous array of x's shape."""
    cp = launch._cupy()
    y = cp.empty(x.shape, dtype=x.dtype)  # (before ascontiguousarray, which makes 0-d (1,))
    launch.launch("activation.cu", "sigmoid_forward", (cp.ascontiguousarray(x), y), x.size)
    return y


def _halves(v: int) -> tuple[int, int]:
    """A 64-bit unsigned value as two signed 32-bit ints (the kernels' int parameters)."""
    lo, hi = v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF
    return tuple(h - (1 << 32) if h >= 1 << 31 else h for h in (lo, hi))


def dropout_apply(a: Any, p: float, scale: float, key: int, offset: int) -> Any:
    """a * (u >= p ? scale : 0) with u_i the kernel's uniform number at ``offset + i`` of
    stream ``key``; p compared in float32, scale rounded to a's dtype. The same (key, offset)
    gives the same mask: the backward regenerates the forward's."""
    cp = launch._cupy()
    out = cp.empty(a.shape, dtype=a.dtype)  # (before ascontiguousarray, which makes 0-d (1,))
    a = cp.ascontiguousarray(a)
    ints = (*_halves(key), *_halves(offset))
    scalars = (float(numpy.float32(p)), scale)
    launch.launch("activation.cu", "dropout_apply", (a, out), a.size, ints, scalars)
    return out
