"""NumPy kernels for convolution and pooling: raw ``numpy.ndarray`` in, raw arrays out.

Windows are strided views of the (padded) input; loops run over the kh*kw kernel offsets
only, never over batch, channels or pixels. The GEMMs go to BLAS through ``numpy.matmul``.
"""

from __future__ import annotations

import threading
import weakref
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels._shared import (
    ConvGemm,
    Pair,
    check_4d,
    check_avg_pool_grad,
    check_col,
    check_conv_backward_input,
    check_conv_backward_weight,
    check_conv_forward,
    check_float,
    check_max_pool_grad,
    check_pool_padding,
    conv_geometry,
    flat_indices,
    output_hw,
)

FLOAT_DTYPES = ("float16", "float32", "float64")

# im2col columns are large and short-lived; refilling one buffer instead of a fresh allocation
# per call skips the page faults, which cost as much as the copy itself. Per thread; columns
# above the cap get an ordinary allocation.
WORKSPACE_MAX_BYTES = 1 << 30
_workspace = threading.local()


def _pad(x: np.ndarray, top: int, bottom: int, left: int, right: int, value: float) -> np.ndarray:
    """x padded on H and W with a constant; x itself when there is nothing to pad."""
    if top == bottom == left == right == 0:
        return x
    N, C, H, W = x.shape
    out = np.full((N, C, H + top + bottom, W + left + right), value, dtype=x.dtype)
    out[:, :, top : top + H, left : left + W] = x
    return out


def _unpad(img: np.ndarray, ph: int, pw: int, H: int, W: int) -> np.ndarray:
    """The contiguous (H, W) image at offset (ph, pw) of a padded one; img when unpadded."""
    if img.shape[2:] == (H, W):
        return img
    return np.ascontiguousarray(img[:, :, ph : ph + H, pw : pw + W])


def _window(
    xp_: np.ndarray, ky: int, kx: int, OH: int, OW: int, sy: int, sx: int, dy: int, dx: int
) -> np.ndarray:
    """The (N, C, OH, OW) view of kernel offset (ky, kx) over a padded input."""
    y0, x0 = ky * dy, kx * dx
    return xp_[:, :, y0 : y0 + sy * (OH - 1) + 1 : sy, x0 : x0 + sx * (OW - 1) + 1 : sx]


def _far_padding(size: int, O: int, k: int, s: int, p: int, d: int) -> int:
    """Padding after the image that the last of O windows reaches (0 when it ends inside)."""
    return max((O - 1) * s + d * (k - 1) + 1 - size - p, 0)


def _padded_for(
    x: np.ndarray,
    OH: int,
    OW: int,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int,
    dx: int,
    value: float,
) -> np.ndarray:
    """x padded so that every window of the sweep lies inside (ceil_mode may need extra)."""
    H, W = x.shape[2:]
    bottom = _far_padding(H, OH, kh, sy, ph, dy)
    right = _far_padding(W, OW, kw, sx, pw, dx)
    return _pad(x, ph, bottom, pw, right, value)


def im2col(
    x: np.ndarray,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> np.ndarray:
    """x (N, C, H, W) -> col (N, C, kh, kw, OH, OW), a read-only strided view of padded x.

    ``col[n, c, i, j, oh, ow] = x_pad[n, c, oh*sy + i*dy, ow*sx + j*dx]`` (zero padding).
    """
    N, C, H, W = check_4d(x, "im2col input")
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx)
    xp_ = np.ascontiguousarray(_pad(x, ph, ph, pw, pw, 0))
    s0, s1, s2, s3 = xp_.strides
    return as_strided(
        xp_,
        shape=(N, C, kh, kw, OH, OW),
        strides=(s0, s1, s2 * dy, s3 * dx, s2 * sy, s3 * sx),
        writeable=False,
    )


def col2im(
    col: np.ndarray,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    H: int,
    W: int,
    dy: int = 1,
    dx: int = 1,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: col (N, C, kh, kw, OH, OW) -> x (N, C, H, W), sums overlaps."""
    N, C, kh, kw, OH, OW = check_col(col, H, W, sy, sx, ph, pw, dy, dx)
    img = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=col.dtype)
    for ky in range(kh):
        for kx in range(kw):
            _window(img, ky, kx, OH, OW, sy, sx, dy, dx)[...] += col[:, :, ky, kx]
    return _unpad(img, ph, pw, H, W)


def _workspace_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array in this thread's reusable buffer (or a fresh one if too big)."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > WORKSPACE_MAX_BYTES:
        return np.empty(shape, dtype=dtype)
    buf = getattr(_workspace, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _workspace.buf = np.empty(nbytes, dtype=np.uint8)
    _workspace.generation = getattr(_workspace, "generation", 0) + 1
    return buf[:nbytes].view(dtype).reshape(shape)


# The im2col columns of the latest conv stay in the workspace until its next use. Backward
# computes the weight gradient of the last conv first, from the same columns: recorded here with
# the input (a weak reference: a new array at a recycled address never matches) and the
# workspace generation (any later use of the workspace invalidates them).
def _remember_cols(x: np.ndarray, key: tuple, cols: np.ndarray) -> np.ndarray:
    if cols.base is not None and cols.nbytes <= WORKSPACE_MAX_BYTES:
        _workspace.cols_of = (weakref.ref(x), key, cols, _workspace.generation)
    return cols


def _recall_cols(x: np.ndarray, key: tuple) -> np.ndarray | None:
    rec = getattr(_workspace, "cols_of", None)
    if rec is None or rec[0]() is not x or rec[1] != key:
        return None
    return rec[2] if rec[3] == _workspace.generation else None


def release_workspace() -> None:
    """Frees this thread's im2col and pooling scratch (reallocated on next use)."""
    _workspace.buf = None
    _workspace.cols_of = None
    _workspace.pool = None


def _pool_scratch(*specs: tuple[int, np.dtype]) -> list[np.ndarray]:
    """Uninitialised 1-D scratch arrays (size, dtype) carved from one per-thread buffer.

    Separate from the im2col workspace, whose columns the conv backward may still need.
    """
    sizes = [-(-n * np.dtype(dt).itemsize // 64) * 64 for n, dt in specs]
    total = sum(sizes)
    buf = getattr(_workspace, "pool", None)
    if total > WORKSPACE_MAX_BYTES:
        buf = np.empty(total, dtype=np.uint8)
    elif buf is None or buf.nbytes < total:
        buf = _workspace.pool = np.empty(total, dtype=np.uint8)
    out, start = [], 0
    for (n, dt), size in zip(specs, sizes):
        out.append(buf[start : start + n * np.dtype(dt).itemsize].view(dt))
        start += size
    return out


def _valid(O: int, size: int, offset: int, s: int, p: int) -> tuple[int, int]:
    """Outputs [lo, hi) whose tap ``o*s - p + offset`` lies inside [0, size)."""
    lo = max(0, -((offset - p) // s))  # ceil((p - offset) / s)
    hi = min(O, (size - 1 + p - offset) // s + 1)
    return lo, max(lo, hi)


def _fill_cols(
    col: np.ndarray, x: np.ndarray, sy: int, sx: int, ph: int, pw: int, dy: int, dx: int
) -> None:
    """Writes im2col columns into ``col``, an (N, C, kh, kw, OH, OW) view of any layout, from
    x, an (N, C, H, W) view: offset by offset, the in-image rectangle copied, the rest zeroed
    (no padded copy)."""
    H, W = x.shape[2:]
    kh, kw, OH, OW = col.shape[2:]
    for ky in range(kh):
        r0, r1 = _valid(OH, H, ky * dy, sy, ph)
        for kx in range(kw):
            c0, c1 = _valid(OW, W, kx * dx, sx, pw)
            dst = col[:, :, ky, kx]
            if r1 == r0 or c1 == c0:
                dst[...] = 0
                continue
            dst[:, :, :r0] = 0
            dst[:, :, r1:] = 0
            dst[:, :, r0:r1, :c0] = 0
            dst[:, :, r0:r1, c1:] = 0
            iy, ix = r0 * sy - ph + ky * dy, c0 * sx - pw + kx * dx
            dst[:, :, r0:r1, c0:c1] = x[
                :, :, iy : iy + (r1 - r0 - 1) * sy + 1 : sy, ix : ix + (c1 - c0 - 1) * sx + 1 : sx
            ]


def _cols(
    x: np.ndarray,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int,
    dx: int,
    batch_last: bool,
) -> np.ndarray:
    """Contiguous im2col columns in the workspace: (N, C, kh, kw, OH, OW) or (C, kh, kw, N, ...)."""
    N, C, H, W = check_4d(x, "conv2d input")
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx)
    key = ("CNHW" if batch_last else "NCHW", x.dtype, kh, kw, sy, sx, ph, pw, dy, dx)
    shape = (C, kh, kw, N, OH, OW) if batch_last else (N, C, kh, kw, OH, OW)
    out = _workspace_array(shape, x.dtype)
    _fill_cols(out.transpose(3, 0, 1, 2, 4, 5) if batch_last else out, x, sy, sx, ph, pw, dy, dx)
    return _remember_cols(x, key, out)


_gemm = ConvGemm(np, _cols, col2im, stride1_input_grad_by_conv=True)


# Strided convs in batch-last layout ----------------------------------------------------------
# With stride > 1 every NCHW window row is OW (often 7-14) strided elements, and NumPy's cost
# per row dominates im2col and, worse, col2im. In (C, H, W, N) layout a window row is N
# contiguous elements, and each GEMM folds the batch into one product. The transposes in and
# out of that layout cost less than the short rows they remove (benchmarks/NOTES.md).
# Stride-1 convs have NCHW rows of OW contiguous floats: short below 16 (14x14, 7x7 maps).
BATCH_LAST_MIN = 8  # batch and channels below this stay in NCHW
BATCH_LAST_MAX_STRIDE1_WIDTH = 15


def _use_batch_last(N: int, C: int, sy: int, sx: int, OW: int, groups: int) -> bool:
    if groups != 1 or N < BATCH_LAST_MIN or C < BATCH_LAST_MIN:
        return False
    return (sy, sx) != (1, 1) or OW <= BATCH_LAST_MAX_STRIDE1_WIDTH


def _to_batch_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> contiguous (C, H, W, N)."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0))


def _cols_batch_last(
    xt: np.ndarray, kh: int, kw: int, sy: int, sx: int, ph: int, pw: int, dy: int, dx: int,
    OH: int, OW: int,
) -> np.ndarray:  # fmt: skip
    """xt (C, H, W, N) -> columns (C, kh, kw, OH, OW, N) in the workspace, zero padding."""
    C, H, W, N = xt.shape
    col = _workspace_array((C, kh, kw, OH, OW, N), xt.dtype)
    _fill_cols(col.transpose(5, 0, 1, 2, 3, 4), xt.transpose(3, 0, 1, 2), sy, sx, ph, pw, dy, dx)
    return col


def _batch_last_cols(x: np.ndarray, geo: tuple, reuse: bool) -> np.ndarray:
    """The (C, kh, kw, OH, OW, N) columns of x (NCHW); with `reuse` (weight gradients only: a
    forward must see in-place changes made to x's array since) those of the latest forward
    while they are still in the workspace."""
    sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
    key = ("CHWN", x.dtype, kh, kw, sy, sx, ph, pw, dy, dx)
    col = _recall_cols(x, key) if reuse else None
    if col is None:
        col = _cols_batch_last(_to_batch_last(x), kh, kw, sy, sx, ph, pw, dy, dx, OH, OW)
        _remember_cols(x, key, col)
    return col


def _forward_batch_last(x, w, b, geo) -> np.ndarray:
    sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
    N, C = x.shape[:2]
    Co = w.shape[0]
    col = _batch_last_cols(x, geo, reuse=False)
    yt = np.ascontiguousarray(w).reshape(Co, C * kh * kw) @ col.reshape(C * kh * kw, -1)
    if b is not None:
        yt += b.reshape(Co, 1)
    return np.ascontiguousarray(yt.reshape(Co, OH, OW, N).transpose(3, 0, 1, 2))


def _backward_weight_batch_last(gy, x, w_shape, geo) -> np.ndarray:
    sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
    C = x.shape[1]
    Co = w_shape[0]
    col = _batch_last_cols(x, geo, reuse=True)
    gyt = _to_batch_last(gy).reshape(Co, -1)
    return (gyt @ col.reshape(C * kh * kw, -1).T).reshape(tuple(w_shape))


def _backward_weight_from_forward_cols(gy, x, w_shape, geo) -> np.ndarray | None:
    """dL/dw from the (N, C, kh, kw, OH, OW) columns of the forward if still in the workspace:
    one GEMM per image summed over the batch, instead of new columns in the other layout."""
    sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
    col = _recall_cols(x, ("NCHW", x.dtype, kh, kw, sy, sx, ph, pw, dy, dx))
    if col is None:
        return None
    N, C = x.shape[:2]
    Co = w_shape[0]
    col = col.reshape(N, C * kh * kw, OH * OW)
    gw = np.matmul(gy.reshape(N, Co, OH * OW), col.transpose(0, 2, 1))
    return gw.sum(axis=0).reshape(tuple(w_shape))


def _backward_input_batch_last(gy, w, x_shape, geo) -> np.ndarray:
    """Columns gcol = W^T gy in (C, kh, kw, OH, OW, N), summed into the image window by window;
    with stride 1, the full correlation of gy with the flipped weight (no col2im)."""
    sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
    N, C, H, W = x_shape
    Co = w.shape[0]
    if sy == sx == 1 and ph <= dy * (kh - 1) and pw <= dx * (kw - 1):
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        pad = (dy * (kh - 1) - ph, dx * (kw - 1) - pw)
        return _forward_batch_last(
            gy, wf, None, conv_geometry(gy.shape, wf.shape, 1, pad, (dy, dx), 1)
        )
    gyt = _to_batch_last(gy).reshape(Co, -1)
    gcol = _workspace_array((C * kh * kw, OH * OW * N), gy.dtype)
    np.matmul(np.ascontiguousarray(w).reshape(Co, C * kh * kw).T, gyt, out=gcol)
    gcol = gcol.reshape(C, kh, kw, OH, OW, N)
    img = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=gy.dtype)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dy, kx * dx
            img[:, y0 : y0 + sy * (OH - 1) + 1 : sy, x0 : x0 + sx * (OW - 1) + 1 : sx] += gcol[
                :, ky, kx
            ]
    return np.ascontiguousarray(img[:, ph : ph + H, pw : pw + W].transpose(3, 0, 1, 2))


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """conv2d (cross-correlation, as PyTorch): x (N, C, H, W), w (C_out, C/groups, kh, kw)."""
    geo = check_conv_forward(x, w, b, stride, padding, dilation, groups)
    if not _use_batch_last(x.shape[0], x.shape[1], geo[0], geo[1], geo[9], groups):
        return _gemm.forward(x, w, b, stride, padding, dilation, groups)
    return _forward_batch_last(x, w, b, geo)


def conv2d_backward_input(
    gy: np.ndarray,
    w: np.ndarray,
    x_shape: Sequence[int],
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """dL/dx of conv2d for output gradient gy (N, C_out, OH, OW); also conv_transpose2d."""
    geo = check_conv_backward_input(gy, w, x_shape, stride, padding, dilation, groups)
    # Stride 1 runs as a conv of gy: its input has C_out channels and its output x's width.
    C = x_shape[1] if geo[:2] != (1, 1) else w.shape[0]
    if not _use_batch_last(x_shape[0], C, geo[0], geo[1], x_shape[3], groups):
        return _gemm.backward_input(gy, w, x_shape, stride, padding, dilation, groups)
    return _backward_input_batch_last(gy, w, tuple(x_shape), geo)


def conv2d_backward_weight(
    gy: np.ndarray,
    x: np.ndarray,
    w_shape: Sequence[int],
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> np.ndarray:
    """dL/dw of conv2d, shape ``w_shape`` (C_out, C/groups, kh, kw)."""
    geo = check_conv_backward_weight(gy, x, w_shape, stride, padding, dilation, groups)
    if not _use_batch_last(x.shape[0], x.shape[1], geo[0], geo[1], geo[9], groups):
        gw = _backward_weight_from_forward_cols(gy, x, w_shape, geo) if groups == 1 else None
        if gw is not None:
            return gw
        return _gemm.backward_weight(gy, x, w_shape, stride, padding, dilation, groups)
    return _backward_weight_batch_last(gy, x, w_shape, geo)


def _first_valid(OH: int, H: int, sy: int, ph: int, dy: int, kh: int) -> np.ndarray:
    """Per output row, the first kernel row inside the image (kh when there is none)."""
    start = np.arange(OH) * sy - ph
    first = np.maximum(-(start // dy), 0)  # ceil(-start / dy) for start < 0
    first[(first >= kh) | (start + first * dy >= H)] = kh
    return first


def max_pool2d_forward(
    x: np.ndarray,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with -inf padding -> (y, argmax); argmax is ``ky*kw + kx`` inside the window.

    Ties keep the first maximum and NaN propagates (the last NaN's offset), as in PyTorch.
    A window lying entirely in the padding gives -inf with argmax -1.
    """
    N, C, H, W = check_4d(x, "max_pool2d input")
    check_float(x, "max_pool2d input", FLOAT_DTYPES)
    check_pool_padding(kh, kw, ph, pw)
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx, ceil_mode)
    if _tiles(x.shape, OH, OW, kh, kw, sy, sx, ph, pw, dy, dx) and x.flags.c_contiguous:
        return _max_pool2d_tiled(x, kh, kw, OH, OW)
    xp_ = _padded_for(x, OH, OW, kh, kw, sy, sx, ph, pw, dy, dx, -np.inf)
    fy = _first_valid(OH, H, sy, ph, dy, kh)
    fx = _first_valid(OW, W, sx, pw, dx, kw)
    argmax = np.zeros((N, C, OH, OW), dtype=np.int32)
    if not fy.any() and not fx.any():
        # Offset (0, 0) lies inside the image for every window: start from it. A copy, never
        # ascontiguousarray: for one image and channel the window view can already be
        # contiguous, and the maximum below would then be written into the caller's input.
        y = _window(xp_, 0, 0, OH, OW, sy, sx, dy, dx).copy()
        first = None
    else:
        y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
        first = np.where((fy[:, None] < kh) & (fx[None, :] < kw), fy[:, None] * kw + fx, -1)
        argmax += first.astype(np.int32)
    # Scratch arrays reused across offsets: fresh ones per offset tripled the bytes allocated,
    # and on a busy allocator their page faults cost as much as the arithmetic.
    win, better, step = np.empty_like(y), np.empty(y.shape, bool), np.empty(y.shape, np.int32)
    for k in range(1 if first is None else 0, kh * kw):
        np.copyto(win, _window(xp_, k // kw, k % kw, OH, OW, sy, sx, dy, dx))
        # Branch-free updates (masked assignments are several times slower): offsets come in
        # increasing order, so the newest strict improvement is the largest k seen.
        np.greater(win, y, out=better)
        np.maximum(y, win, out=y)
        np.multiply(better, np.int32(k), out=step)
        np.maximum(argmax, step, out=argmax)
    if first is not None and (first < 0).any():
        argmax[:, :, first < 0] = -1
    if y.size and np.isnan(y.min()):
        _max_pool_nan_argmax(xp_, argmax, kh, kw, OH, OW, sy, sx, dy, dx)
    return y, argmax


def _tiles(
    x_shape: Sequence[int],
    OH: int,
    OW: int,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int,
    dx: int,
) -> bool:
    """Windows tile whole rows: kernel == stride, no padding or dilation, W == OW * kw."""
    plain = (sy, sx, ph, pw, dy, dx) == (kh, kw, 0, 0, 1, 1)
    fits = x_shape[3] == OW * kw and OH * kh <= x_shape[2] and OH > 0 and OW > 0
    return plain and fits and 0 < kh * kw < 256 and x_shape[0] * x_shape[1] > 0


def _row_records(a: np.ndarray, kh: int, OH: int) -> tuple[np.dtype, list[np.ndarray]]:
    """Per kernel row ky, the (N*C, OH) view of rows ky, ky + kh, ... of a C-contiguous
    (N, C, H, W) array as opaque W-element records.

    Copying records is one long memcpy-like loop, where a float view of the same rows runs
    NumPy's inner loop over only W elements at a time.
    """
    N, C, H, W = a.shape
    rec = np.dtype((np.void, W * a.itemsize))
    recs = a.reshape(N * C, H, W).view(rec)[:, :, 0]
    return rec, [recs[:, ky : OH * kh : kh] for ky in range(kh)]


def _max_pool2d_tiled(
    x: np.ndarray, kh: int, kw: int, OH: int, OW: int
) -> tuple[np.ndarray, np.ndarray]:
    """max_pool2d_forward for windows tiling the rows (see ``_tiles``); same results.

    Each offset's plane is one stride-kw slice of a packed row block, so every copy and
    comparison runs over the whole plane in one loop; the argmax is kept in uint8 until the end.
    """
    N, C, H, W = x.shape
    shape = (N, C, OH, OW)
    y = np.empty(shape, dtype=x.dtype)
    yf = y.reshape(-1)
    n = yf.size
    rows, win, better, am8, step = _pool_scratch(
        (n * kw, x.dtype), (n, x.dtype), (n, bool), (n, np.uint8), (n, np.uint8)
    )
    am8.fill(0)
    rec, row_views = _row_records(x, kh, OH)
    for ky in range(kh):
        np.copyto(rows.view(rec).reshape(N * C, OH), row_views[ky])
        for kx in range(kw):
            k = ky * kw + kx
            if k == 0:
                np.copyto(yf, rows[0::kw])
                continue
            np.copyto(win, rows[kx::kw])
            # Same update order as the general path: ties keep the first maximum.
            np.greater(win, yf, out=better)
            np.maximum(yf, win, out=yf)
            np.multiply(better, np.uint8(k), out=step)
            np.maximum(am8, step, out=am8)
    argmax = am8.astype(np.int32).reshape(shape)
    if y.size and np.isnan(y.min()):
        _max_pool_nan_argmax(x, argmax, kh, kw, OH, OW, kh, kw, 1, 1)
    return y, argmax


def _max_pool_nan_argmax(
    xp_: np.ndarray,
    argmax: np.ndarray,
    kh: int,
    kw: int,
    OH: int,
    OW: int,
    sy: int,
    sx: int,
    dy: int,
    dx: int,
) -> None:
    """In windows holding NaN, PyTorch's argmax is the last NaN (y is NaN already)."""
    for k in range(kh * kw):
        win = _window(xp_, k // kw, k % kw, OH, OW, sy, sx, dy, dx)
        argmax[win != win] = k


def _select_bits(
    gy_bits: np.ndarray,
    argmax: np.ndarray,
    k: int,
    mask: np.ndarray,
    bits: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out`` = the bits of ``where(argmax == k, gy, 0)``, through the scratch ``mask`` (bool)
    and ``bits`` (``gy_bits``' int type): gy's bits ANDed with all-ones or all-zeros.

    Exact for inf and NaN (a multiply by the mask would turn 0 * inf into NaN), and several
    times faster than ``np.where`` on a random mask.
    """
    np.equal(argmax, k, out=mask)
    np.negative(mask, dtype=bits.dtype, out=bits)
    np.bitwise_and(gy_bits, bits, out=out)


def max_pool2d_backward(
    gy: np.ndarray,
    argmax: np.ndarray,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> np.ndarray:
    """dL/dx of max pooling: each gy goes to its window's argmax (summed where windows overlap)."""
    check_max_pool_grad(gy, argmax, x_shape)
    N, C, H, W = x_shape
    OH, OW = gy.shape[2:]
    if _tiles(x_shape, OH, OW, kh, kw, sy, sx, ph, pw, dy, dx):
        return _max_pool2d_backward_tiled(gy, argmax, x_shape, kh, kw)
    bottom = _far_padding(H, OH, kh, sy, ph, dy)
    right = _far_padding(W, OW, kw, sx, pw, dx)
    gx = np.zeros((N, C, H + ph + bottom, W + pw + right), dtype=gy.dtype)
    gy = np.ascontiguousarray(gy)
    # Windows that cannot overlap: each input pixel gets at most one write.
    disjoint = sy >= dy * (kh - 1) + 1 and sx >= dx * (kw - 1) + 1
    itype = np.dtype(f"int{gy.dtype.itemsize * 8}")
    mask, bits = np.empty(gy.shape, bool), np.empty(gy.shape, itype)  # reused scratch
    for k in range(kh * kw):
        win = _window(gx, k // kw, k % kw, OH, OW, sy, sx, dy, dx)
        _select_bits(gy.view(itype), argmax, k, mask, bits, out=bits)
        if disjoint:
            win[...] = bits.view(gy.dtype)
        else:
            win += bits.view(gy.dtype)
    return _unpad(gx, ph, pw, H, W)


def _max_pool2d_backward_tiled(
    gy: np.ndarray, argmax: np.ndarray, x_shape: Sequence[int], kh: int, kw: int
) -> np.ndarray:
    """max_pool2d_backward for windows tiling the rows: every gx element is written once."""
    N, C, H, W = x_shape
    OH, OW = gy.shape[2:]
    gx = np.empty((N, C, H, W), dtype=gy.dtype)
    gx[:, :, OH * kh :] = 0  # rows below the last window (floor mode)
    itype = np.dtype(f"int{gy.dtype.itemsize * 8}")
    gyi = np.ascontiguousarray(gy).view(itype).reshape(-1)
    am = np.ascontiguousarray(argmax).reshape(-1)
    rows, mask, bits = _pool_scratch((am.size * kw, itype), (am.size, bool), (am.size, itype))
    rec, gx_rows = _row_records(gx, kh, OH)
    for ky in range(kh):
        for kx in range(kw):
            _select_bits(gyi, am, ky * kw + kx, mask, bits, out=rows[kx::kw])
        gx_rows[ky][...] = rows.view(rec).reshape(N * C, OH)
    return gx


def max_pool2d_indices(
    argmax: np.ndarray,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> np.ndarray:
    """argmax offsets -> PyTorch's ``return_indices`` (int64 flat index into H*W; -1 if none)."""
    return flat_indices(np, argmax, x_shape, kw, sy, sx, ph, pw, dy, dx)


def _avg_divisor(
    H: int,
    W: int,
    OH: int,
    OW: int,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    count_include_pad: bool,
) -> np.ndarray | int:
    """kh*kw, or the (OH, OW) count of window cells inside the image."""
    if count_include_pad:
        return kh * kw

    def counts(O: int, size: int, k: int, s: int, p: int) -> np.ndarray:
        start = np.arange(O) * s - p
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(counts(OH, H, kh, sy, ph), counts(OW, W, kw, sx, pw))


def avg_pool2d_forward(
    x: np.ndarray,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling with zero padding (PyTorch semantics, floor mode)."""
    N, C, H, W = check_4d(x, "avg_pool2d input")
    check_float(x, "avg_pool2d input", FLOAT_DTYPES)
    check_pool_padding(kh, kw, ph, pw)
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw)
    xp_ = _pad(x, ph, ph, pw, pw, 0)
    y = _window(xp_, 0, 0, OH, OW, sy, sx, 1, 1).copy()
    for k in range(1, kh * kw):
        y += _window(xp_, k // kw, k % kw, OH, OW, sy, sx, 1, 1)
    div = _avg_divisor(H, W, OH, OW, kh, kw, sy, sx, ph, pw, count_include_pad)
    y /= np.asarray(div, dtype=x.dtype)
    return y


def avg_pool2d_backward(
    gy: np.ndarray,
    x_shape: Sequence[int],
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    count_include_pad: bool = True,
) -> np.ndarray:
    """dL/dx of average pooling: gy / divisor spread over each window."""
    OH, OW = check_avg_pool_grad(gy, x_shape, kh, kw, sy, sx, ph, pw)
    N, C, H, W = x_shape
    div = _avg_divisor(H, W, OH, OW, kh, kw, sy, sx, ph, pw, count_include_pad)
    g = gy / np.asarray(div, dtype=gy.dtype)
    gx = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gy.dtype)
    for k in range(kh * kw):
        _window(gx, k // kw, k % kw, OH, OW, sy, sx, 1, 1)[...] += g
    return _unpad(gx, ph, pw, H, W)
