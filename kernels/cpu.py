"""NumPy kernels for convolution and pooling: raw ``numpy.ndarray`` in, raw arrays out.

Every function takes the call's :class:`kernels.geometry.Geometry`, built and checked once at
the op's entry, and trusts it. Windows are strided views of the (padded) input; loops run over
the kh*kw kernel offsets only, never over batch, channels or pixels. The GEMMs go to BLAS
through ``numpy.matmul``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels import parallel, polyphase, winograd
from kernels.geometry import Geometry
from kernels.layout import batch_first

# Scratch for arrays that never leave a kernel call (im2col columns consumed by the GEMM right
# away, gradient columns, pooling temporaries): refilling one buffer instead of a fresh
# allocation per call skips the page faults, which cost as much as the copy itself. Per thread;
# above the cap, an ordinary allocation. Nothing in it outlives the call that filled it: columns
# a Function keeps for its backward are fresh arrays it owns.
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


def _padded(x: np.ndarray, g: Geometry, value: float) -> np.ndarray:
    """x padded so that every window of the sweep lies inside (ceil mode may need extra)."""
    bottom, right = g.far_padding()
    return _pad(x, g.ph, bottom, g.pw, right, value)


def _zeros_padded(g: Geometry, dtype: np.dtype) -> np.ndarray:
    """A zero (N, C) image padded as :func:`_padded` pads, for scatters that are unpadded after."""
    bottom, right = g.far_padding()
    return np.zeros((g.N, g.C, g.H + g.ph + bottom, g.W + g.pw + right), dtype=dtype)


def _unpad(img: np.ndarray, g: Geometry) -> np.ndarray:
    """The contiguous (H, W) image at offset (ph, pw) of a padded one; img when unpadded."""
    if img.shape[2:] == (g.H, g.W):
        return img
    return np.ascontiguousarray(img[:, :, g.ph : g.ph + g.H, g.pw : g.pw + g.W])


def _window(xp_: np.ndarray, ky: int, kx: int, g: Geometry) -> np.ndarray:
    """The (..., OH, OW) view of kernel offset (ky, kx) over a padded input (H, W last)."""
    y0, x0 = ky * g.dy, kx * g.dx
    return xp_[..., y0 : y0 + g.sy * (g.OH - 1) + 1 : g.sy, x0 : x0 + g.sx * (g.OW - 1) + 1 : g.sx]


def im2col(x: np.ndarray, g: Geometry) -> np.ndarray:
    """x (N, C, H, W) -> col (N, C, kh, kw, OH, OW), a read-only strided view of padded x.

    ``col[n, c, i, j, oh, ow] = x_pad[n, c, oh*sy + i*dy, ow*sx + j*dx]`` (zero padding).
    """
    xp_ = np.ascontiguousarray(_pad(x, g.ph, g.ph, g.pw, g.pw, 0))
    s0, s1, s2, s3 = xp_.strides
    return as_strided(
        xp_,
        shape=(g.N, g.C, g.kh, g.kw, g.OH, g.OW),
        strides=(s0, s1, s2 * g.dy, s3 * g.dx, s2 * g.sy, s3 * g.sx),
        writeable=False,
    )


def col2im(col: np.ndarray, g: Geometry) -> np.ndarray:
    """Adjoint of :func:`im2col`: col (n, C, kh, kw, OH, OW) -> x (n, C, H, W), sums overlaps
    (n: any number of images, e.g. a part of g's batch)."""
    img = np.zeros((col.shape[0], g.C, g.H + 2 * g.ph, g.W + 2 * g.pw), dtype=col.dtype)
    for ky in range(g.kh):
        for kx in range(g.kw):
            _window(img, ky, kx, g)[...] += col[:, :, ky, kx]
    return _unpad(img, g)


def _workspace_array(shape: tuple[int, ...], dtype: np.dtype, keep: bool = False) -> np.ndarray:
    """An uninitialised array: scratch in this thread's reusable buffer (a fresh one if too
    big), or with ``keep`` one the caller keeps (the spare buffer :func:`give_back` returned,
    when it fits, else a fresh one). One function, not two nested ones: it sits under every
    conv forward, whose depth to its kernel is held down (tests/benchmarks/test_call_depth.py)."""
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if keep:
        buf = getattr(_workspace, "spare", None)
        if buf is None or buf.nbytes < nbytes:
            buf = np.empty(nbytes, dtype=np.uint8)
        else:
            _workspace.spare = None
    elif nbytes > WORKSPACE_MAX_BYTES:
        return np.empty(shape, dtype=dtype)
    else:
        buf = getattr(_workspace, "buf", None)
        if buf is None or buf.nbytes < nbytes:
            buf = _workspace.buf = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def give_back(cols: np.ndarray) -> None:
    """Columns a Conv2d node kept, handed back by the node when its graph is freed (nothing
    else holds them then): the next kept columns reuse the buffer. Columns above malloc's
    32 MiB heap limit would otherwise be mapped, page-faulted in and unmapped every step.
    (The strided Winograd path's KeptTiles hold a plain array, no workspace buffer: the
    check below leaves it to the garbage collector.)"""
    buf = cols.v if isinstance(cols, winograd.KeptTiles) else cols
    while buf.base is not None:
        buf = buf.base
    spare = getattr(_workspace, "spare", None)
    if buf.dtype == np.uint8 and buf.ndim == 1 and (spare is None or spare.nbytes < buf.nbytes):
        _workspace.spare = buf


def release_workspace() -> None:
    """Frees this thread's im2col and pooling scratch (reallocated on next use)."""
    _workspace.buf = None
    _workspace.pool = None
    _workspace.spare = None


def _pool_scratch(*specs: tuple[int, np.dtype]) -> list[np.ndarray]:
    """Uninitialised 1-D scratch arrays (size, dtype) carved from one per-thread buffer."""
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


def _fill_cols(col: np.ndarray, x: np.ndarray, g: Geometry) -> None:
    """Writes im2col columns into ``col``, an (N, C, kh, kw, OH, OW) view of any layout, from
    x, an (N, C, H, W) view: offset by offset, the in-image rectangle copied, the rest zeroed
    (no padded copy)."""
    # Per axis and kernel offset i, the outputs [lo, hi) whose tap o*s - p + i*d lies inside
    # [0, size): one formula for rows and columns, in this loop rather than in a helper, which
    # would be a frame under every conv forward (tests/benchmarks/test_call_depth.py).
    spans_y: list[tuple[int, int]] = []
    spans_x: list[tuple[int, int]] = []
    for spans, O, size, k, d, s, p in (
        (spans_y, g.OH, g.H, g.kh, g.dy, g.sy, g.ph),
        (spans_x, g.OW, g.W, g.kw, g.dx, g.sx, g.pw),
    ):
        for i in range(k):
            lo = max(0, -((i * d - p) // s))  # ceil((p - i d) / s)
            hi = min(O, (size - 1 + p - i * d) // s + 1)
            spans.append((lo, max(lo, hi)))
    sy, sx, ph, pw = g.sy, g.sx, g.ph, g.pw
    for ky, (r0, r1) in enumerate(spans_y):
        for kx, (c0, c1) in enumerate(spans_x):
            dst = col[:, :, ky, kx]
            if r1 == r0 or c1 == c0:
                dst[...] = 0
                continue
            dst[:, :, :r0] = 0
            dst[:, :, r1:] = 0
            dst[:, :, r0:r1, :c0] = 0
            dst[:, :, r0:r1, c1:] = 0
            iy, ix = r0 * sy - ph + ky * g.dy, c0 * sx - pw + kx * g.dx
            dst[:, :, r0:r1, c0:c1] = x[
                :, :, iy : iy + (r1 - r0 - 1) * sy + 1 : sy, ix : ix + (c1 - c0 - 1) * sx + 1 : sx
            ]


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


def _cols_batch_last(x: np.ndarray, g: Geometry, keep: bool = False) -> np.ndarray:
    """x (N, C, H, W) -> columns (C, kh, kw, OH, OW, N), zero padding: fresh if kept."""
    xt = _to_batch_last(x)
    col = _workspace_array((g.C, g.kh, g.kw, g.OH, g.OW, g.N), x.dtype, keep)
    _fill_cols(col.transpose(5, 0, 1, 2, 3, 4), xt.transpose(3, 0, 1, 2), g)
    return col


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, keep_cols: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """conv2d (cross-correlation, as PyTorch): x (N, C, H, W), w (C_out, C/groups, kh, kw).

    Returns (y, cols): with ``keep_cols``, the im2col columns (or, on the strided Winograd
    path, its :class:`winograd.KeptTiles`) as :func:`conv2d_backward_weight` takes them (the
    caller owns them), else None.
    """
    if winograd.applies(g, x.dtype):
        return winograd.conv2d(x, w, b, g), None  # its weight gradient keeps no columns
    if winograd.strided_applies(g, x.dtype):
        return winograd.strided_conv2d(x, w, b, g, keep_cols)  # on the phases; keeps tiles
    N, Co, G = g.N, g.K, g.groups
    K = g.C // G * g.kh * g.kw
    wm = np.ascontiguousarray(w).reshape(G, Co // G, K)
    if _use_batch_last(g.N, g.C, g.sy, g.sx, g.OW, g.groups):
        col = _cols_batch_last(x, g, keep_cols)
        yt = wm[0] @ col.reshape(K, -1)
        if b is not None:
            yt += b.reshape(Co, 1)
        y = batch_first(yt.reshape(Co, g.OH, g.OW, N))
    elif b is not None and G == 1:
        # The bias as one more column row of ones in the GEMM: y is written once, not written
        # and then read and written again by ``y += b`` (for the CNN's 1 -> 32 channel conv,
        # K = 9, that addition took ~0.5 of ~1.5 ms). The columns are the (N, C, kh, kw, OH,
        # OW) view of rows 0..K-1 of each image's (K + 1, L) block: fresh if kept, else
        # workspace; their (N, K, L) reshape is still a view for the weight gradient.
        L = g.OH * g.OW
        buf = _workspace_array((N, K + 1, L), x.dtype, keep_cols)
        col = buf[:, :K].reshape(N, g.C, g.kh, g.kw, g.OH, g.OW)
        _fill_cols(col, x, g)
        buf[:, K] = 1
        wb = np.concatenate((wm[0], b.reshape(Co, 1).astype(wm.dtype, copy=False)), axis=1)
        y = np.matmul(wb, buf).reshape(g.y_shape)
    else:
        # Contiguous (N, C, kh, kw, OH, OW) columns: fresh if kept, else workspace.
        col = _workspace_array((N, g.C, g.kh, g.kw, g.OH, g.OW), x.dtype, keep_cols)
        _fill_cols(col, x, g)
        y = np.matmul(wm, col.reshape(N, G, K, g.OH * g.OW)).reshape(g.y_shape)
        if b is not None:
            y += b.reshape(1, Co, 1, 1)
    return y, (col if keep_cols else None)


def conv2d_backward_weight(
    gy: np.ndarray, x: np.ndarray, g: Geometry, cols: np.ndarray | None = None
) -> np.ndarray:
    """dL/dw of conv2d, shape (C_out, C/groups, kh, kw); ``cols`` are the forward's kept
    columns of x (recomputed when None)."""
    if cols is None and winograd.applies(g, x.dtype):
        return winograd.conv2d_backward_weight(gy, x, g)
    if isinstance(cols, winograd.KeptTiles):  # the forward's, whatever the switch says now
        return winograd.strided_backward_weight(gy, x, g, cols)
    if cols is None and winograd.strided_applies(g, x.dtype):
        return winograd.strided_backward_weight(gy, x, g)
    N, Co, G = g.N, g.K, g.groups
    K = g.C // G * g.kh * g.kw
    L = g.OH * g.OW
    if _use_batch_last(g.N, g.C, g.sy, g.sx, g.OW, g.groups):
        col = _cols_batch_last(x, g) if cols is None else cols
        gyt = _to_batch_last(gy).reshape(Co, -1)
        return (gyt @ col.reshape(K, -1).T).reshape(g.w_shape)
    if cols is not None and G == 1:
        # The forward's (N, C kh kw, L) columns: one GEMM per image, summed over the batch
        # (the GEMMs of each part of the batch on a thread of their own, when cut).
        gyr, colr = gy.reshape(N, Co, L), cols.reshape(N, K, L).transpose(0, 2, 1)
        parts = parallel.spans(N, cols.nbytes)
        if len(parts) > 1:
            gw = np.empty((N, Co, K), dtype=gy.dtype)
            parallel.run([functools.partial(np.matmul, gyr[p], colr[p], out=gw[p])
                          for p in parts])  # fmt: skip
        else:
            gw = np.matmul(gyr, colr)
        return gw.sum(axis=0).reshape(g.w_shape)
    # Batch folded into the GEMM's inner dimension: one (Co/G, N*L) x (N*L, K) product per
    # group instead of a (N, Co, K) temporary summed afterwards.
    colT = _workspace_array((g.C, g.kh, g.kw, N, g.OH, g.OW), x.dtype)
    if cols is None:
        _fill_cols(colT.transpose(3, 0, 1, 2, 4, 5), x, g)
    else:
        colT[...] = cols.transpose(1, 2, 3, 0, 4, 5)
    colT = colT.reshape(G, K, N * L)
    gyT = np.ascontiguousarray(gy.reshape(N, G, Co // G, L).transpose(1, 2, 0, 3))
    gw = np.matmul(gyT.reshape(G, Co // G, N * L), colT.transpose(0, 2, 1))
    return gw.reshape(g.w_shape)


def _flipped(w: np.ndarray, g: Geometry) -> tuple[np.ndarray, Geometry]:
    """Stride 1: the input gradient is the full correlation of gy with the flipped,
    in/out-swapped weight; that weight and the geometry of that conv."""
    G, Co, C, kh, kw = g.groups, g.K, g.C, g.kh, g.kw
    wf = w.reshape(G, Co // G, C // G, kh, kw)[:, :, :, ::-1, ::-1]
    wf = np.ascontiguousarray(wf.transpose(0, 2, 1, 3, 4)).reshape(C, Co // G, kh, kw)
    pad_y, pad_x = g.dy * (kh - 1) - g.ph, g.dx * (kw - 1) - g.pw
    gf = Geometry(
        g.N, Co, g.OH, g.OW, C, g.H, g.W, kh, kw, 1, 1, pad_y, pad_x, g.dy, g.dx, G
    )  # fmt: skip
    return wf, gf


def conv2d_backward_input(gy: np.ndarray, w: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dx of conv2d for output gradient gy (N, C_out, OH, OW); also conv_transpose2d."""
    N, C, H, W, Co, G = g.N, g.C, g.H, g.W, g.K, g.groups
    kh, kw, OH, OW = g.kh, g.kw, g.OH, g.OW
    K = C // G * kh * kw
    if g.sy == g.sx == 1 and g.ph <= g.dy * (kh - 1) and g.pw <= g.dx * (kw - 1):
        wf, gf = _flipped(w, g)
        return conv2d_forward(gy, wf, None, gf)[0]
    if polyphase.applies(g, gy.dtype):  # opt-in: the phases' slabs, shifted and interleaved
        buf = _workspace_array(polyphase.col_shape(g), gy.dtype)
        return polyphase.conv2d_backward_input(gy, w, g, buf)
    if winograd.strided_applies(g, gy.dtype):  # Winograd on the phases
        return winograd.strided_backward_input(gy, w, g)
    wm = np.ascontiguousarray(w).reshape(G, Co // G, K)
    if _use_batch_last(N, C, g.sy, g.sx, W, G):
        # Columns W^T gy in (C, kh, kw, OH, OW, N), summed into the image window by window.
        gyt = _to_batch_last(gy).reshape(Co, -1)
        gcol = _workspace_array((K, OH * OW * N), gy.dtype)
        np.matmul(wm[0].T, gyt, out=gcol)
        gcol = gcol.reshape(C, kh, kw, OH, OW, N)
        img = np.zeros((C, H + 2 * g.ph, W + 2 * g.pw, N), dtype=gy.dtype)
        imgw = img.transpose(3, 0, 1, 2)  # (N, C, H', W') view: windows index its last two axes
        for ky in range(kh):
            for kx in range(kw):
                _window(imgw, ky, kx, g)[...] += gcol[:, ky, kx].transpose(3, 0, 1, 2)
        return batch_first(img[:, g.ph : g.ph + H, g.pw : g.pw + W])
    gyr = np.ascontiguousarray(gy).reshape(N, G, Co // G, OH * OW)
    parts = parallel.spans(N, N * K * OH * OW * gy.itemsize)  # the columns' bytes
    if len(parts) > 1:
        gx = np.empty(g.x_shape, dtype=gy.dtype)
        parallel.run([functools.partial(_col2im_gemm, gyr[p], wm, g, gx[p]) for p in parts])
        return gx
    return _col2im_gemm(gyr, wm, g)


# The NCHW im2col convs' backward on the BLAS thread count ------------------------------------
# A conv with few input channels (DCGAN's D1, 1 -> 64 4x4/2, and its transposed twin G2; the
# CNN's first conv) runs one GEMM per image with an inner dimension of 9-16 (forward, col2im
# input gradient) or 196-784 (weight gradient): each far below the size at which OpenBLAS
# splits a GEMM, and its copies are NumPy's, on one thread. The images are independent, so
# the weight gradient's per-image GEMMs and the input gradient's GEMMs + col2im are cut into
# one part of the batch per BLAS thread (kernels/parallel.py), each computing what one thread
# would for its images: the same bits at any thread count (the weight gradient's per-image
# products are summed after the parts, in the same order). Only calls with at least
# parallel.MIN_SPLIT_BYTES of columns (DCGAN's D1: 0.8 MB). The forward (im2col fill + GEMM)
# was cut the same way and measured slower at two threads (benchmarks/NOTES.md item 22): a
# hand-off to a worker thread costs 40-270 us here, about what half of its ~0.5 ms saves.


def _col2im_gemm(gyr: np.ndarray, wm: np.ndarray, g: Geometry, out: np.ndarray | None = None):
    """col2im(W^T gy) (n, C, H, W) for gyr (n, G, Co/G, L), n images of g's batch (all, or a
    part's into ``out``)."""
    n = gyr.shape[0]
    gcol = np.matmul(wm.transpose(0, 2, 1), gyr).reshape(n, g.C, g.kh, g.kw, g.OH, g.OW)
    if out is None:
        return col2im(gcol, g)
    out[...] = col2im(gcol, g)
    return None


# Pooling -------------------------------------------------------------------------------------
def _first_valid(O: int, size: int, s: int, p: int, d: int, k: int) -> np.ndarray:
    """Per output row, the first kernel row inside the image (k when there is none)."""
    start = np.arange(O) * s - p
    first = np.maximum(-(start // d), 0)  # ceil(-start / d) for start < 0
    first[(first >= k) | (start + first * d >= size)] = k
    return first


def max_pool2d_forward(x: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with -inf padding -> (y, argmax); argmax is ``ky*kw + kx`` inside the window.

    Ties keep the first maximum and NaN propagates (the last NaN's offset), as in PyTorch.
    A window lying entirely in the padding gives -inf with argmax -1.
    """
    kh, kw = g.kh, g.kw
    if _tiles(g) and x.flags.c_contiguous:
        return _max_pool2d_tiled(x, g)
    xp_ = _padded(x, g, -np.inf)
    fy = _first_valid(g.OH, g.H, g.sy, g.ph, g.dy, kh)
    fx = _first_valid(g.OW, g.W, g.sx, g.pw, g.dx, kw)
    shape = (g.N, g.C, g.OH, g.OW)
    argmax = np.zeros(shape, dtype=np.int32)
    if not fy.any() and not fx.any():
        # Offset (0, 0) lies inside the image for every window: start from it. A copy, never
        # ascontiguousarray: for one image and channel the window view can already be
        # contiguous, and the maximum below would then be written into the caller's input.
        y = _window(xp_, 0, 0, g).copy()
        first = None
    else:
        y = np.full(shape, -np.inf, dtype=x.dtype)
        first = np.where((fy[:, None] < kh) & (fx[None, :] < kw), fy[:, None] * kw + fx, -1)
        argmax += first.astype(np.int32)
    # Scratch arrays reused across offsets: fresh ones per offset tripled the bytes allocated,
    # and on a busy allocator their page faults cost as much as the arithmetic.
    win, better, step = np.empty_like(y), np.empty(y.shape, bool), np.empty(y.shape, np.int32)
    for k in range(1 if first is None else 0, kh * kw):
        np.copyto(win, _window(xp_, k // kw, k % kw, g))
        # Branch-free updates (masked assignments are several times slower): offsets come in
        # increasing order, so the newest strict improvement is the largest k seen.
        np.greater(win, y, out=better)
        np.maximum(y, win, out=y)
        np.multiply(better, np.int32(k), out=step)
        np.maximum(argmax, step, out=argmax)
    if first is not None and (first < 0).any():
        argmax[:, :, first < 0] = -1
    if y.size and np.isnan(y.min()):
        _max_pool_nan_argmax(xp_, argmax, g)
    return y, argmax


def _tiles(g: Geometry) -> bool:
    """Windows tile whole rows: kernel == stride, no padding or dilation, W == OW * kw."""
    plain = (g.sy, g.sx, g.ph, g.pw, g.dy, g.dx) == (g.kh, g.kw, 0, 0, 1, 1)
    fits = g.W == g.OW * g.kw and g.OH * g.kh <= g.H and g.OH > 0 and g.OW > 0
    return plain and fits and 0 < g.kh * g.kw < 256 and g.N * g.C > 0


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


def _max_pool2d_tiled(x: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """max_pool2d_forward for windows tiling the rows (see ``_tiles``); same results.

    Each offset's plane is one stride-kw slice of a packed row block, so every copy and
    comparison runs over the whole plane in one loop; the argmax is kept in uint8 until the end.
    """
    N, C, kh, kw, OH = g.N, g.C, g.kh, g.kw, g.OH
    shape = (N, C, OH, g.OW)
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
        _max_pool_nan_argmax(x, argmax, g)
    return y, argmax


def _max_pool_nan_argmax(xp_: np.ndarray, argmax: np.ndarray, g: Geometry) -> None:
    """In windows holding NaN, PyTorch's argmax is the last NaN (y is NaN already)."""
    for k in range(g.kh * g.kw):
        win = _window(xp_, k // g.kw, k % g.kw, g)
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


def max_pool2d_backward(gy: np.ndarray, argmax: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dx of max pooling: each gy goes to its window's argmax (summed where windows overlap)."""
    if _tiles(g):
        return _max_pool2d_backward_tiled(gy, argmax, g)
    gx = _zeros_padded(g, gy.dtype)
    gy = np.ascontiguousarray(gy)
    # Windows that cannot overlap: each input pixel gets at most one write.
    disjoint = g.sy >= g.dy * (g.kh - 1) + 1 and g.sx >= g.dx * (g.kw - 1) + 1
    itype = np.dtype(f"int{gy.dtype.itemsize * 8}")
    mask, bits = np.empty(gy.shape, bool), np.empty(gy.shape, itype)  # reused scratch
    for k in range(g.kh * g.kw):
        win = _window(gx, k // g.kw, k % g.kw, g)
        _select_bits(gy.view(itype), argmax, k, mask, bits, out=bits)
        if disjoint:
            win[...] = bits.view(gy.dtype)
        else:
            win += bits.view(gy.dtype)
    return _unpad(gx, g)


def _max_pool2d_backward_tiled(gy: np.ndarray, argmax: np.ndarray, g: Geometry) -> np.ndarray:
    """max_pool2d_backward for windows tiling the rows: every gx element is written once."""
    N, C, kh, kw, OH = g.N, g.C, g.kh, g.kw, g.OH
    gx = np.empty(g.x_shape, dtype=gy.dtype)
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


def avg_pool2d_forward(x: np.ndarray, g: Geometry) -> np.ndarray:
    """Average pooling with zero padding, divisor by :meth:`Geometry.avg_divisors`."""
    xp_ = _padded(x, g, 0)
    y = _window(xp_, 0, 0, g).copy()
    for k in range(1, g.kh * g.kw):
        y += _window(xp_, k // g.kw, k % g.kw, g)
    y /= np.asarray(g.avg_divisors(), dtype=x.dtype)
    return y


def avg_pool2d_backward(gy: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dx of average pooling: gy / divisor spread over each window."""
    gd = gy / np.asarray(g.avg_divisors(), dtype=gy.dtype)
    gx = _zeros_padded(g, gy.dtype)
    for k in range(g.kh * g.kw):
        _window(gx, k // g.kw, k % g.kw, g)[...] += gd
    return _unpad(gx, g)
