"""Leaky ReLU, ReLU's, tanh's and sigmoid's backwards, sigmoid and dropout on CuPy arrays, one
kernel each (``kernels/cuda/activation.cu``), in every dtype of :data:`DTYPES`: float16 and
bfloat16 computed in float32 and rounded once (``kernels.launch.OPMATH``).

CuPy is imported lazily, only when a launch happens.
"""

from __future__ import annotations

from typing import Any

import numpy

from kernels import launch

SOURCE = "activation.cu"
# The dtype names the kernels are instantiated for (float16, bfloat16, float32, float64).
DTYPES = launch.dtypes(SOURCE)


def supports(dtype: Any) -> bool:
    """Whether the kernels have an instantiation for ``dtype`` (floating, of :data:`DTYPES`)."""
    return numpy.dtype(dtype).name in DTYPES


def _elementwise(name: str, inputs: tuple[Any, ...], ints=(), scalars=()) -> Any:
    """Kernel ``name``(inputs..., out) of activation.cu over every element: out a new
    contiguous array of the first input's shape and dtype."""
    cp = launch._cupy()
    first = inputs[0]
    out = cp.empty(first.shape, dtype=first.dtype)  # (before ascontiguousarray: 0-d -> (1,))
    arrays = [cp.ascontiguousarray(a) for a in inputs]
    launch.launch(SOURCE, name, (*arrays, out), first.size, ints, scalars)
    return out


def leaky_relu_forward(x: Any, slope: float) -> Any:
    """y = x > 0 ? x : slope x, a new contiguous array of x's shape."""
    return _elementwise("leaky_relu_forward", (x,), scalars=(slope,))


def leaky_relu_backward(y: Any, gy: Any, slope: float) -> Any:
    """gx = y > 0 ? gy : slope gy from the forward's output (0 <= slope; ReLU at 0)."""
    return _elementwise("leaky_relu_backward", (y, gy), scalars=(slope,))


def tanh_backward(y: Any, gy: Any) -> Any:
    """gx = gy (1 - y^2) from tanh's output y."""
    return _elementwise("tanh_backward", (y, gy))


def sigmoid_backward(y: Any, gy: Any) -> Any:
    """gx = gy y (1 - y) from sigmoid's output y."""
    return _elementwise("sigmoid_backward", (y, gy))


def sigmoid_forward(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), a new contiguous array of x's shape."""
    return _elementwise("sigmoid_forward", (x,))


def _halves(v: int) -> tuple[int, int]:
    """A 64-bit unsigned value as two signed 32-bit ints (the kernels' int parameters)."""
    lo, hi = v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF
    return tuple(h - (1 << 32) if h >= 1 << 31 else h for h in (lo, hi))


def dropout_scale(p: float, dtype: Any) -> float:
    """1 / (1 - p) rounded to the dtype :func:`dropout_apply` computes ``dtype`` in (float32
    for float16/bfloat16, as PyTorch's fused dropout; a float16 scale would round twice)."""
    return float(launch.opmath(dtype).type(1.0 / (1.0 - p)))


def dropout_apply(a: Any, p: float, key: int, offset: int) -> Any:
    """a * (u >= p ? scale : 0) with u_i the kernel's uniform number at ``offset + i`` of
    stream ``key`` and scale :func:`dropout_scale`; p compared in float32, the product formed
    in a's compute dtype and rounded once. The same (key, offset) gives the same mask: the
    backward regenerates the forward's."""
    ints = (*_halves(key), *_halves(offset))
    scalars = (float(numpy.float32(p)), dropout_scale(p, a.dtype))
    return _elementwise("dropout_apply", (a,), ints, scalars)
