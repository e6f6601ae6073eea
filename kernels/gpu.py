"""CUDA kernels for convolution and pooling: raw ``cupy.ndarray`` in, raw arrays out.

Same functions and signatures as :mod:`kernels.cpu`, each taking the call's
:class:`kernels.geometry.Geometry` and trusting it. The hand-written kernels live in
``kernels/cuda/*.cu`` and run through :mod:`kernels.launch` with the geometry's
``launch_ints()``; the GEMMs are ``cupy.matmul`` (cuBLAS).

The im2col columns are written once, as the (C kh kw, N OH OW) matrix, so that each conv GEMM
folds the batch into one product: forward ``W (C_out, C kh kw) @ col``, weight gradient
``gy^T (C_out, N OH OW) @ col^T`` and input gradient ``W^T @ gy^T`` into columns that col2im
gathers. (A broadcast batched matmul over images makes CuPy build pointer arrays, several
extra kernels per call, and copy the weight.) With groups, the same matrices split into G
blocks, one batched product over the groups.
CuPy is imported inside the functions only, so ``import kernels.gpu`` works without it.
"""

from __future__ import annotations

from typing import Any

import numpy

from kernels import launch
from kernels.geometry import Geometry

# The conv and pool kernels run float16 and bfloat16 themselves (kernels/cuda/*.cu sum in
# float32; CuPy's float16 GEMMs accumulate in float32 on cuBLAS): engine.ops.conv calls them
# directly in those dtypes instead of through float32 copies.
LOW_PRECISION_KERNELS = True


def _cp() -> Any:
    return launch._cupy()


def _cols(x: Any, g: Geometry) -> Any:
    """x (N, C, H, W) -> col (C, kh, kw, N, OH, OW), zero padding (a new contiguous array)."""
    col = _cp().empty((g.C, g.kh, g.kw, g.N, g.OH, g.OW), dtype=x.dtype)
    # One thread per (channel, image, output pixel), each writing its kh * kw window.
    launch.launch("conv.cu", "im2col", (x, col), g.C * g.N * g.OH * g.OW, g.launch_ints())
    return col


def _col2im(col: Any, g: Geometry) -> Any:
    """Adjoint of :func:`_cols`: col (C, kh, kw, N, OH, OW) -> x (N, C, H, W), sums overlaps."""
    x = _cp().empty(g.x_shape, dtype=col.dtype)
    launch.launch("conv.cu", "col2im", (col, x), x.size, g.launch_ints())
    return x


def _mm(a: Any, b: Any, G: int, out: Any | None = None) -> Any:
    """a @ b over the group axis: 2-D products for one group, one batched product for G; into
    ``out`` (G, m, n) when given."""
    if G == 1:
        return _cp().matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return _cp().matmul(a, b, out=out)


def gy_t(gy: Any, g: Geometry) -> Any:
    """gy (N, C_out, OH, OW) -> (G, C_out/G, N OH OW), contiguous: the output gradient in the
    layout both backward GEMMs read (one copy, shared by them when a conv's backward makes both)."""
    G = g.groups
    gyt = _cp().ascontiguousarray(gy.reshape(g.N, g.K, g.OH * g.OW).transpose(1, 0, 2))
    return gyt.reshape(G, g.K // G, -1)


def _w(w: Any, g: Geometry) -> Any:
    """w (C_out, C/G, kh, kw) -> (G, C_out/G, C/G kh kw)."""
    G = g.groups
    return _cp().ascontiguousarray(w).reshape(G, g.K // G, -1)


def conv2d_forward(
    x: Any, w: Any, b: Any | None, g: Geometry, keep_cols: bool = False
) -> tuple[Any, Any | None]:
    """conv2d (cross-correlation, as PyTorch): x (N, C, H, W), w (C_out, C/groups, kh, kw).

    Returns (y, cols): with ``keep_cols``, the columns :func:`conv2d_backward_weight` takes.
    """
    cp = _cp()
    G = g.groups
    col = _cols(cp.ascontiguousarray(x), g)
    yt = _mm(_w(w, g), col.reshape(G, -1, g.N * g.OH * g.OW), G)  # (G, Co/G, N L)
    yt = yt.reshape(g.K, g.N, g.OH * g.OW).transpose(1, 0, 2)
    y = cp.empty(g.y_shape, dtype=x.dtype)
    out = y.reshape(g.N, g.K, g.OH * g.OW)
    if b is None:
        out[...] = yt
    else:
        cp.add(yt, b.reshape(1, g.K, 1), out=out)  # bias added in the transposing copy
    return y, (col if keep_cols else None)


def conv2d_backward_weight(
    gy: Any, x: Any, g: Geometry, cols: Any | None = None, gyt: Any | None = None
) -> Any:
    """dL/dw of conv2d, shape (C_out, C/groups, kh, kw); ``cols`` from the forward, or None;
    ``gyt`` the :func:`gy_t` of gy when the caller has it (the input gradient shares it).

    The GEMM writes into the gradient's own array (no base), so autograd stores it as the
    parameter's ``.grad`` without the copy it makes of a view."""
    cp = _cp()
    G = g.groups
    col = _cols(cp.ascontiguousarray(x), g) if cols is None else cols
    col = col.reshape(G, -1, g.N * g.OH * g.OW)
    a = gy_t(gy, g) if gyt is None else gyt
    gw = cp.empty(g.w_shape, dtype=a.dtype)
    _mm(a, col.transpose(0, 2, 1), G, out=gw.reshape(G, g.K // G, -1))
    return gw


def conv2d_backward_input(gy: Any, w: Any, g: Geometry, gyt: Any | None = None) -> Any:
    """dL/dx of conv2d for output gradient gy (N, C_out, OH, OW); also conv_transpose2d.
    ``gyt``: the :func:`gy_t` of gy when the caller has it."""
    G = g.groups
    a = gy_t(gy, g) if gyt is None else gyt
    gcol = _mm(_w(w, g).transpose(0, 2, 1), a, G)  # (G, C/G kh kw, N L)
    return _col2im(gcol, g)


def give_back(cols: Any) -> None:
    """Nothing to do: CuPy's memory pool already reuses freed device memory."""


def max_pool2d_forward(x: Any, g: Geometry) -> tuple[Any, Any]:
    """Max pooling with -inf padding -> (y, argmax int32 offset ``ky*kw + kx`` in the window)."""
    cp = _cp()
    x = cp.ascontiguousarray(x)
    y = cp.empty(g.y_shape, dtype=x.dtype)
    argmax = cp.empty(g.y_shape, dtype=numpy.int32)
    launch.launch("pool.cu", "max_pool2d_forward", (x, y, argmax), y.size, g.launch_ints())
    return y, argmax


def max_pool2d_backward(gy: Any, argmax: Any, g: Geometry) -> Any:
    """dL/dx of max pooling: each input sums gy over the windows whose argmax it is."""
    cp = _cp()
    gy = cp.ascontiguousarray(gy)
    gx = cp.empty(g.x_shape, dtype=gy.dtype)
    arrays = (gy, cp.ascontiguousarray(argmax), gx)
    launch.launch("pool.cu", "max_pool2d_backward", arrays, gx.size, g.launch_ints())
    return gx


def _avg_ints(g: Geometry) -> tuple[int, ...]:
    return (*g.launch_ints(), int(g.count_include_pad), g.divisor_override)


def avg_pool2d_forward(x: Any, g: Geometry) -> Any:
    """Average pooling with zero padding, PyTorch's divisor rule."""
    cp = _cp()
    x = cp.ascontiguousarray(x)
    y = cp.empty(g.y_shape, dtype=x.dtype)
    launch.launch("pool.cu", "avg_pool2d_forward", (x, y), y.size, _avg_ints(g))
    return y


def avg_pool2d_backward(gy: Any, g: Geometry) -> Any:
    """dL/dx of average pooling: gy / divisor spread over each window."""
    cp = _cp()
    gy = cp.ascontiguousarray(gy)
    gx = cp.empty(g.x_shape, dtype=gy.dtype)
    launch.launch("pool.cu", "avg_pool2d_backward", (gy, gx), gx.size, _avg_ints(g))
    return gx
