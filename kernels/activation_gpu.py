"""Leaky ReLU and ReLU's backward on CuPy arrays, one kernel each (``kernels/cuda/activation.cu``).

CuPy is imported lazily, only when a launch happens.
"""

from __future__ import annotations

from typing import Any

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
