"""CUDA kernels for convolution and pooling: raw ``cupy.ndarray`` in, raw arrays out.

Same functions and signatures as :mod:`kernels.cpu`. The hand-written kernels live in
``kernels/cuda/*.cu`` and run through :mod:`kernels.launch`; the GEMMs are ``cupy.matmul``
(cuBLAS).
CuPy is imported inside the functions only, so ``import kernels.gpu`` works without it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy

from kernels import launch
from kernels._shared import (
    ConvGemm,
    Pair,
    check_4d,
    check_avg_pool_grad,
    check_col,
    check_float,
    check_max_pool_grad,
    check_pool_padding,
    flat_indices,
    output_hw,
)


def _cupy() -> Any:
    import cupy

    return cupy


def _input(x: Any, name: str) -> tuple[Any, tuple[int, int, int, int]]:
    shape = check_4d(x, name)
    check_float(x, name, launch.FLOAT_DTYPES)
    return _cupy().ascontiguousarray(x), shape


def im2col(
    x: Any,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> Any:
    """x (N, C, H, W) -> col (N, C, kh, kw, OH, OW), zero padding (a new contiguous array)."""
    x, (N, C, H, W) = _input(x, "im2col input")
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx)
    col = _cupy().empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    ints = (H, W, kh, kw, OH, OW, sy, sx, ph, pw, dy, dx)
    launch.launch("conv.cu", "im2col", (x, col), col.size, ints)
    return col


def col2im(
    col: Any,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    H: int,
    W: int,
    dy: int = 1,
    dx: int = 1,
) -> Any:
    """Adjoint of :func:`im2col`: col (N, C, kh, kw, OH, OW) -> x (N, C, H, W), sums overlaps."""
    N, C, kh, kw, OH, OW = check_col(col, H, W, sy, sx, ph, pw, dy, dx)
    check_float(col, "col2im input", launch.FLOAT_DTYPES)
    cupy = _cupy()
    col = cupy.ascontiguousarray(col)
    x = cupy.empty((N, C, H, W), dtype=col.dtype)
    ints = (H, W, kh, kw, OH, OW, sy, sx, ph, pw, dy, dx)
    launch.launch("conv.cu", "col2im", (col, x), x.size, ints)
    return x


def _cols(
    x: Any,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int,
    dx: int,
    batch_last: bool,
) -> Any:
    col = im2col(x, kh, kw, sy, sx, ph, pw, dy, dx)
    if batch_last:
        col = _cupy().ascontiguousarray(col.transpose(1, 2, 3, 0, 4, 5))
    return col


def _gemm() -> ConvGemm:
    # The input gradient goes through col2im on the GPU (a gather, no atomics).
    return ConvGemm(_cupy(), _cols, col2im, stride1_input_grad_by_conv=False)


def conv2d_forward(
    x: Any,
    w: Any,
    b: Any | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Any:
    """conv2d (cross-correlation, as PyTorch): x (N, C, H, W), w (C_out, C/groups, kh, kw)."""
    return _gemm().forward(x, w, b, stride, padding, dilation, groups)


def conv2d_backward_input(
    gy: Any,
    w: Any,
    x_shape: Sequence[int],
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Any:
    """dL/dx of conv2d for output gradient gy (N, C_out, OH, OW); also conv_transpose2d."""
    return _gemm().backward_input(gy, w, x_shape, stride, padding, dilation, groups)


def conv2d_backward_weight(
    gy: Any,
    x: Any,
    w_shape: Sequence[int],
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Any:
    """dL/dw of conv2d, shape ``w_shape`` (C_out, C/groups, kh, kw)."""
    return _gemm().backward_weight(gy, x, w_shape, stride, padding, dilation, groups)


def max_pool2d_forward(
    x: Any,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
    ceil_mode: bool = False,
) -> tuple[Any, Any]:
    """Max pooling with -inf padding -> (y, argmax int32 offset ``ky*kw + kx`` in the window)."""
    x, (N, C, H, W) = _input(x, "max_pool2d input")
    check_pool_padding(kh, kw, ph, pw)
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx, ceil_mode)
    cupy = _cupy()
    y = cupy.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = cupy.empty((N, C, OH, OW), dtype=numpy.int32)
    ints = (H, W, OH, OW, kh, kw, sy, sx, ph, pw, dy, dx)
    launch.launch("pool.cu", "max_pool2d_forward", (x, y, argmax), y.size, ints)
    return y, argmax


def max_pool2d_backward(
    gy: Any,
    argmax: Any,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> Any:
    """dL/dx of max pooling: each input sums gy over the windows whose argmax it is."""
    check_max_pool_grad(gy, argmax, x_shape)
    N, C, H, W = (int(v) for v in x_shape)
    if argmax.dtype != numpy.int32:
        raise TypeError(f"max_pool2d_backward: argmax must be int32, got {argmax.dtype.name}")
    check_float(gy, "max_pool2d_backward gy", launch.FLOAT_DTYPES)
    OH, OW = gy.shape[2:]
    cupy = _cupy()
    gy = cupy.ascontiguousarray(gy)
    argmax = cupy.ascontiguousarray(argmax)
    gx = cupy.empty((N, C, H, W), dtype=gy.dtype)
    ints = (H, W, OH, OW, kh, kw, sy, sx, ph, pw, dy, dx)
    launch.launch("pool.cu", "max_pool2d_backward", (gy, argmax, gx), gx.size, ints)
    return gx


def max_pool2d_indices(
    argmax: Any,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> Any:
    """argmax offsets -> PyTorch's ``return_indices`` (int64 flat index into H*W; -1 if none)."""
    return flat_indices(_cupy(), argmax, x_shape, kw, sy, sx, ph, pw, dy, dx)


def avg_pool2d_forward(
    x: Any,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    count_include_pad: bool = True,
) -> Any:
    """Average pooling with zero padding (PyTorch semantics, floor mode)."""
    x, (N, C, H, W) = _input(x, "avg_pool2d input")
    check_pool_padding(kh, kw, ph, pw)
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw)
    y = _cupy().empty((N, C, OH, OW), dtype=x.dtype)
    ints = (H, W, OH, OW, kh, kw, sy, sx, ph, pw, int(bool(count_include_pad)))
    launch.launch("pool.cu", "avg_pool2d_forward", (x, y), y.size, ints)
    return y


def avg_pool2d_backward(
    gy: Any,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    count_include_pad: bool = True,
) -> Any:
    """dL/dx of average pooling: gy / divisor spread over each window."""
    OH, OW = check_avg_pool_grad(gy, x_shape, kh, kw, sy, sx, ph, pw)
    N, C, H, W = (int(v) for v in x_shape)
    check_float(gy, "avg_pool2d_backward gy", launch.FLOAT_DTYPES)
    cupy = _cupy()
    gy = cupy.ascontiguousarray(gy)
    gx = cupy.empty((N, C, H, W), dtype=gy.dtype)
    ints = (H, W, OH, OW, kh, kw, sy, sx, ph, pw, int(bool(count_include_pad)))
    launch.launch("pool.cu", "avg_pool2d_backward", (gy, gx), gx.size, ints)
    return gx
