"""Device-independent parts of the kernels: argument checks, output sizes, conv GEMMs.

The conv GEMMs are written once against a small backend (``xp`` plus the backend's
``im2col``/``col2im``) so that ``kernels.cpu`` and ``kernels.gpu`` share them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

Pair = int | Sequence[int]
# (sy, sx, ph, pw, dy, dx, kh, kw, OH, OW), as conv_geometry returns it.
Geometry = tuple[int, int, int, int, int, int, int, int, int, int]


def pair(value: Pair, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``; anything else is a ValueError."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def out_size(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a window sweep, PyTorch's formula (``ceil_mode`` as in pooling)."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    # The last window must start inside the input or the left padding.
    if (out - 1) * s >= size + p:
        out -= 1
    return out


def check_window(
    kh: int, kw: int, sy: int, sx: int, ph: int, pw: int, dy: int = 1, dx: int = 1
) -> None:
    """Kernel and dilation >= 1, stride >= 1, padding >= 0."""
    if min(kh, kw) < 1 or min(sy, sx) < 1 or min(dy, dx) < 1 or min(ph, pw) < 0:
        raise ValueError(
            f"invalid window: kernel=({kh}, {kw}) stride=({sy}, {sx}) padding=({ph}, {pw}) "
            f"dilation=({dy}, {dx}); kernel, stride and dilation must be >= 1, padding >= 0"
        )


def check_4d(a: Any, name: str) -> tuple[int, int, int, int]:
    """The shape of a 4-D (N, C, H, W) array, or a ValueError naming it."""
    if a.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(a.shape)}")
    return tuple(int(v) for v in a.shape)  # type: ignore[return-value]


def check_float(a: Any, name: str, allowed: tuple[str, ...]) -> None:
    if a.dtype.name not in allowed:
        raise TypeError(f"{name} must have dtype in {allowed}, got {a.dtype.name}")


def output_hw(
    H: int,
    W: int,
    kh: int,
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
    ceil_mode: bool = False,
) -> tuple[int, int]:
    """(OH, OW) of a window sweep over an (H, W) image; ValueError if either is < 1."""
    check_window(kh, kw, sy, sx, ph, pw, dy, dx)
    OH = out_size(H, kh, sy, ph, dy, ceil_mode)
    OW = out_size(W, kw, sx, pw, dx, ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(
            f"output size ({OH}, {OW}) is too small: input (H, W)=({H}, {W}), kernel=({kh}, {kw}), "
            f"stride=({sy}, {sx}), padding=({ph}, {pw}), dilation=({dy}, {dx})"
        )
    return OH, OW


def check_pool_padding(kh: int, kw: int, ph: int, pw: int) -> None:
    """PyTorch's rule for pooling: padding at most half of the kernel size (dilation aside)."""
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"pad should be at most half of kernel size, but got pad=({ph}, {pw}) and "
            f"kernel_size=({kh}, {kw})"
        )


def check_col(
    col: Any, H: int, W: int, sy: int, sx: int, ph: int, pw: int, dy: int, dx: int
) -> tuple[int, int, int, int, int, int]:
    """col2im's col checked against an (H, W) image; returns its (N, C, kh, kw, OH, OW)."""
    if col.ndim != 6:
        raise ValueError(f"col2im expects col (N, C, kh, kw, OH, OW), got shape {col.shape}")
    N, C, kh, kw, OH, OW = (int(v) for v in col.shape)
    if output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx) != (OH, OW):
        raise ValueError(
            f"col2im: col {col.shape} does not match an image of (H, W)=({H}, {W}) with "
            f"stride=({sy}, {sx}) padding=({ph}, {pw}) dilation=({dy}, {dx})"
        )
    return N, C, kh, kw, OH, OW


def check_max_pool_grad(gy: Any, argmax: Any, x_shape: Sequence[int]) -> None:
    """max_pool2d_backward's gy and argmax: both (N, C, OH, OW) for an x of ``x_shape``."""
    if gy.shape != argmax.shape or tuple(gy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(
            f"max_pool2d_backward: gy {gy.shape} and argmax {argmax.shape} must both be "
            f"(N, C, OH, OW) for x {tuple(x_shape)}"
        )


def check_avg_pool_grad(
    gy: Any, x_shape: Sequence[int], kh: int, kw: int, sy: int, sx: int, ph: int, pw: int
) -> tuple[int, int]:
    """avg_pool2d_backward's gy checked against x's window sweep; returns (OH, OW)."""
    N, C, H, W = (int(v) for v in x_shape)
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw)
    if tuple(gy.shape) != (N, C, OH, OW):
        raise ValueError(
            f"avg_pool2d_backward: gy has shape {tuple(gy.shape)}, expected {(N, C, OH, OW)}"
        )
    return OH, OW


def conv_geometry(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
) -> Geometry:
    """Checks a conv's shapes; returns (sy, sx, ph, pw, dy, dx, kh, kw, OH, OW)."""
    sy, sx = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    dy, dx = pair(dilation, "dilation")
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(
            f"conv2d expects x (N, C, H, W) and weight (C_out, C/groups, kh, kw), "
            f"got x {tuple(x_shape)} and weight {tuple(w_shape)}"
        )
    _, C, H, W = x_shape
    Co, Cg, kh, kw = w_shape
    if groups < 1 or C % groups or Co % groups or Cg * groups != C:
        raise ValueError(
            f"conv2d channels do not match groups={groups}: x {tuple(x_shape)} has C={C}, "
            f"weight {tuple(w_shape)} expects C={Cg}*groups and C_out={Co} divisible by groups"
        )
    OH, OW = output_hw(H, W, kh, kw, sy, sx, ph, pw, dy, dx)
    return sy, sx, ph, pw, dy, dx, kh, kw, OH, OW


def _check_same_dtype(a: Any, b: Any, what: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{what}: dtypes differ, {a.dtype.name} and {b.dtype.name}")


def _check_gy(gy: Any, N: int, Co: int, OH: int, OW: int) -> None:
    if tuple(gy.shape) != (N, Co, OH, OW):
        raise ValueError(f"conv2d gradient has shape {tuple(gy.shape)}, expected {(N, Co, OH, OW)}")


def check_conv_forward(
    x: Any, w: Any, b: Any | None, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Geometry:
    """Checks conv2d's x, weight and bias; returns :func:`conv_geometry`'s tuple."""
    _check_same_dtype(x, w, "conv2d x and weight")
    geo = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None:
        _check_same_dtype(x, b, "conv2d x and bias")
        Co = w.shape[0]
        if tuple(b.shape) != (Co,):
            raise ValueError(f"conv2d bias must have shape ({Co},), got {tuple(b.shape)}")
    return geo


def check_conv_backward_weight(
    gy: Any,
    x: Any,
    w_shape: Sequence[int],
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
) -> Geometry:
    """Checks conv2d_backward_weight's arguments; returns :func:`conv_geometry`'s tuple."""
    _check_same_dtype(gy, x, "conv2d_backward_weight gy and x")
    geo = conv_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    _check_gy(gy, x.shape[0], w_shape[0], geo[8], geo[9])
    return geo


def check_conv_backward_input(
    gy: Any,
    w: Any,
    x_shape: Sequence[int],
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
) -> Geometry:
    """Checks conv2d_backward_input's arguments; returns :func:`conv_geometry`'s tuple."""
    _check_same_dtype(gy, w, "conv2d_backward_input gy and weight")
    geo = conv_geometry(x_shape, w.shape, stride, padding, dilation, groups)
    _check_gy(gy, x_shape[0], w.shape[0], geo[8], geo[9])
    return geo


def flat_indices(
    xp: Any,
    argmax: Any,
    x_shape: Sequence[int],
    kw: int,
    sy: int,
    sx: int,
    ph: int,
    pw: int,
    dy: int = 1,
    dx: int = 1,
) -> Any:
    """Window offsets ``ky*kw + kx`` -> flat int64 indices into H*W (-1 stays -1)."""
    W = int(x_shape[3])
    OH, OW = argmax.shape[2:]
    am = argmax.astype(xp.int64)
    row = xp.arange(OH, dtype=xp.int64).reshape(OH, 1) * sy - ph + (am // kw) * dy
    col = xp.arange(OW, dtype=xp.int64).reshape(1, OW) * sx - pw + (am % kw) * dx
    valid = am >= 0
    # Arithmetic instead of a masked store: -1 where no window element was valid.
    return (row * W + col) * valid - (~valid)


class ConvGemm:
    """conv2d forward and backward as im2col + batched matmul (BLAS / cuBLAS).

    ``cols(x, kh, kw, sy, sx, ph, pw, dy, dx, batch_last)`` returns the im2col columns as a
    C-contiguous array, Chainer's (N, C, kh, kw, OH, OW) or, with ``batch_last``,
    (C, kh, kw, N, OH, OW). With ``groups`` they are read as (N, G, C/G * kh * kw, OH * OW) and
    multiplied by the weight's (G, C_out/G, C/G * kh * kw).
    """

    def __init__(
        self,
        xp: Any,
        cols: Callable[..., Any],
        col2im: Callable[..., Any],
        stride1_input_grad_by_conv: bool,
    ) -> None:
        self.xp = xp
        self.cols = cols
        self.col2im = col2im
        # On the CPU, a stride-1 input gradient is faster as a conv with the flipped weight
        # (one more im2col copy) than as a GEMM into a big col followed by col2im.
        self.stride1_input_grad_by_conv = stride1_input_grad_by_conv

    def forward(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        groups: int = 1,
    ) -> Any:
        """y = conv2d(x, w) + b, (N, C_out, OH, OW)."""
        geo = check_conv_forward(x, w, b, stride, padding, dilation, groups)
        sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
        N, C = x.shape[:2]
        Co = w.shape[0]
        G = groups
        col = self.cols(x, kh, kw, sy, sx, ph, pw, dy, dx, False)
        col = col.reshape(N, G, C // G * kh * kw, OH * OW)
        wm = self.xp.ascontiguousarray(w).reshape(G, Co // G, C // G * kh * kw)
        y = self.xp.matmul(wm, col).reshape(N, Co, OH, OW)
        if b is not None:
            y += b.reshape(1, Co, 1, 1)
        return y

    def backward_weight(
        self,
        gy: Any,
        x: Any,
        w_shape: Sequence[int],
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        groups: int = 1,
    ) -> Any:
        """dL/dw (C_out, C/groups, kh, kw) = sum over batch and pixels of gy x col^T."""
        geo = check_conv_backward_weight(gy, x, w_shape, stride, padding, dilation, groups)
        sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
        N, C = x.shape[:2]
        Co = w_shape[0]
        G = groups
        xp = self.xp
        # Batch folded into the GEMM's inner dimension: one (Co/G, N*L) x (N*L, K/G) product
        # per group instead of a (N, Co, K) temporary summed afterwards.
        colT = self.cols(x, kh, kw, sy, sx, ph, pw, dy, dx, True)
        colT = colT.reshape(G, C // G * kh * kw, N * OH * OW)
        gyT = xp.ascontiguousarray(gy.reshape(N, G, Co // G, OH * OW).transpose(1, 2, 0, 3))
        gyT = gyT.reshape(G, Co // G, N * OH * OW)
        gw = xp.matmul(gyT, colT.transpose(0, 2, 1))
        return gw.reshape(tuple(w_shape))

    def backward_input(
        self,
        gy: Any,
        w: Any,
        x_shape: Sequence[int],
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        groups: int = 1,
    ) -> Any:
        """dL/dx (N, C, H, W); also conv_transpose2d's forward (gy as its input)."""
        geo = check_conv_backward_input(gy, w, x_shape, stride, padding, dilation, groups)
        sy, sx, ph, pw, dy, dx, kh, kw, OH, OW = geo
        N, C, H, W = x_shape
        Co = w.shape[0]
        G = groups
        xp = self.xp
        if (
            self.stride1_input_grad_by_conv
            and sy == sx == 1
            and ph <= dy * (kh - 1)
            and pw <= dx * (kw - 1)
        ):
            # Stride 1: the input gradient is the full correlation of gy with the flipped,
            # in/out-swapped weight.
            wf = w.reshape(G, Co // G, C // G, kh, kw)[:, :, :, ::-1, ::-1]
            wf = xp.ascontiguousarray(wf.transpose(0, 2, 1, 3, 4)).reshape(C, Co // G, kh, kw)
            pad = (dy * (kh - 1) - ph, dx * (kw - 1) - pw)
            return self.forward(gy, wf, None, 1, pad, (dy, dx), G)
        wm = xp.ascontiguousarray(w).reshape(G, Co // G, C // G * kh * kw)
        gyr = xp.ascontiguousarray(gy).reshape(N, G, Co // G, OH * OW)
        gcol = xp.matmul(wm.transpose(0, 2, 1), gyr).reshape(N, C, kh, kw, OH, OW)
        return self.col2im(gcol, sy, sx, ph, pw, H, W, dy, dx)
