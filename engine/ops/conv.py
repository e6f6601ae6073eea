"""Convolution, pooling and resizing ops: conv2d, conv_transpose2d, max/avg/adaptive pooling,
interpolate.

The raw work is done by `kernels.cpu` (NumPy) or `kernels.gpu` (CuPy RawKernels), picked by the
input's device. Every backward is written with Functions of this module, so gradients of gradients
work (WGAN-GP, R1):

- conv is bilinear in (x, w): `Conv2d`, its input gradient `Conv2dGradInput` (a transposed conv)
  and its weight gradient `Conv2dGradWeight` are each other's backward (as in Chainer's
  convolution_2d / deconvolution_2d);
- max-pool's backward `MaxPool2dGrad` scatters into the stored argmax; its own backward is the
  matching gather `MaxPool2dGather`, whose backward is the scatter again;
- avg-pool and its gradient are each other's adjoints.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy

import kernels

from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor
from .linalg import matmul
from .reduction import sum
from .shape import broadcast_to, getitem, pad, reshape, squeeze, unsqueeze

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "interpolate",
    "upsample",
]

IntPair = int | Sequence[int]


def _kernels(device):
    """The raw kernels of a device: chosen by the tensor's device, not by its array's type."""
    return kernels.backend(device.type)


# Argument checks ---------------------------------------------------------------------------
def _pair(value: IntPair, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        out = (int(value[0]), int(value[1]))
    else:
        out = (int(value), int(value))
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def _check_float(name: str, *tensors: Tensor | None) -> None:
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if t.dtype.kind != "f":
            raise TypeError(f"{name}: expected floating point tensors, got dtype {t.dtype}")
    if len({t.dtype for t in ts}) > 1:
        raise TypeError(
            f"{name}: input and weight/bias dtypes differ: {[str(t.dtype) for t in ts]}"
        )


def _check_4d(name: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise RuntimeError(f"{name}: expected a 4-D (N, C, H, W) input, got shape {x.shape}")


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: in ceil mode the last window must start inside."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _check_out(name: str, out: tuple[int, int], x: Tensor, **params) -> None:
    if min(out) < 1:
        desc = ", ".join(f"{k}={v}" for k, v in params.items())
        raise RuntimeError(
            f"{name}: output size {out} is too small for input of shape {x.shape} ({desc})"
        )


def _unbatched(fn):
    """Accept (C, H, W) inputs as PyTorch does: add and remove a batch dimension."""

    @functools.wraps(fn)
    def wrapper(x: Tensor, *args, **kwargs):
        if x.ndim != 3:
            return fn(x, *args, **kwargs)
        out = fn(unsqueeze(x, 0), *args, **kwargs)
        if isinstance(out, tuple):
            return tuple(squeeze(o, 0) for o in out)
        return squeeze(out, 0)

    return wrapper


# Convolution -------------------------------------------------------------------------------
class _ConvParams:
    """stride, padding, dilation (pairs) and groups of a convolution."""

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    @property
    def args(self) -> tuple:
        return self.stride, self.padding, self.dilation, self.groups


class Conv2d(Function):
    """y = conv(x, w) (+ b): cross-correlation, PyTorch semantics."""

    def __init__(self, p: _ConvParams):
        self.p = p

    def forward(self, x, w, b=None):
        return _kernels(self.device).conv2d_forward(x, w, b, *self.p.args)

    def backward(self, gy):
        x, w = self.inputs[:2]
        # The weight gradient first: on the CPU it reuses the forward's im2col columns while
        # they are still in the kernels' workspace (the input gradient overwrites it).
        gw = Conv2dGradWeight(self.p, w.shape)(x, gy) if w.requires_grad else None
        gx = Conv2dGradInput(self.p, x.shape)(gy, w) if x.requires_grad else None
        gb = None
        if len(self.inputs) == 3 and self.inputs[2].requires_grad:
            gb = _bias_grad(gy)
        return gx, gw, gb


def _bias_grad(gy: Tensor) -> Tensor:
    """gy summed over batch and pixels. Unrecorded float32/64 NumPy sums go through einsum,
    3x faster than ``sum(axis=(0, 2, 3))``, which strides across the batch for every channel."""
    a = gy.array
    if is_grad_enabled() or gy.xp is not numpy or a.dtype not in (numpy.float32, numpy.float64):
        return sum(gy, (0, 2, 3))
    return Tensor._wrap(numpy.einsum("nchw->c", a), gy.device)


class Conv2dGradInput(Function):
    """gx = conv's input gradient of gy for weight w: the transposed convolution."""

    def __init__(self, p: _ConvParams, x_shape: tuple):
        self.p, self.x_shape = p, tuple(x_shape)

    def forward(self, gy, w):
        return _kernels(self.device).conv2d_backward_input(gy, w, self.x_shape, *self.p.args)

    def backward(self, ggx):
        # <ggx, T(gy, w)> = <conv(ggx, w), gy>: differentiate that in gy and in w.
        gy, w = self.inputs
        g_gy = Conv2d(self.p)(ggx, w) if gy.requires_grad else None
        g_w = Conv2dGradWeight(self.p, w.shape)(ggx, gy) if w.requires_grad else None
        return g_gy, g_w


class Conv2dGradWeight(Function):
    """gw = conv's weight gradient of gy for input x."""

    def __init__(self, p: _ConvParams, w_shape: tuple):
        self.p, self.w_shape = p, tuple(w_shape)

    def forward(self, x, gy):
        return _kernels(self.device).conv2d_backward_weight(gy, x, self.w_shape, *self.p.args)

    def backward(self, ggw):
        # <ggw, W(x, gy)> = <conv(x, ggw), gy>.
        x, gy = self.inputs
        g_x = Conv2dGradInput(self.p, x.shape)(gy, ggw) if x.requires_grad else None
        g_gy = Conv2d(self.p)(x, ggw) if gy.requires_grad else None
        return g_x, g_gy


def _check_bias(name: str, bias: Tensor | None, channels: int) -> None:
    if bias is not None and bias.shape != (channels,):
        raise RuntimeError(
            f"{name}: bias must have shape ({channels},) for {channels} output channels, "
            f"got {bias.shape}"
        )


@_unbatched
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation of input (N, C, H, W) with weight (C_out, C/groups, kh, kw).

    Output (N, C_out, OH, OW), OH = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1.
    `padding` may also be "valid" (no padding) or "same" (output size = input size, stride 1).
    """
    name = "conv2d"
    _check_4d(name, input)
    if weight.ndim != 4:
        raise RuntimeError(
            f"{name}: expected a 4-D weight (C_out, C/groups, kh, kw), got {weight.shape}"
        )
    _check_float(name, input, weight, bias)
    if isinstance(padding, str):
        input, padding = _string_padding(input, weight, padding, stride, dilation)
    p = _conv_params(stride, padding, dilation, groups)
    N, C, H, W = input.shape
    Co, Cg, kh, kw = weight.shape
    if C % groups or Co % groups or Cg * groups != C:
        raise RuntimeError(
            f"{name}: input of shape {input.shape} has {C} channels and weight of shape "
            f"{weight.shape} expects {Cg} * groups={groups} = {Cg * groups} with C_out={Co}; "
            f"both channel counts must be divisible by groups"
        )
    _check_bias(name, bias, Co)
    out = tuple(
        _conv_out(n, k, s, q, d)
        for n, k, s, q, d in zip((H, W), (kh, kw), p.stride, p.padding, p.dilation, strict=True)
    )
    _check_out(
        name, out, input, kernel=(kh, kw), stride=p.stride, padding=p.padding, dilation=p.dilation
    )
    fn = Conv2d(p)
    return fn(input, weight) if bias is None else fn(input, weight, bias)


def _string_padding(x: Tensor, weight: Tensor, mode: str, stride, dilation):
    """PyTorch's padding="valid" | "same": (input, symmetric padding). An odd total padding
    puts the extra row/column at the bottom/right, explicitly padded."""
    if mode == "valid":
        return x, 0
    if mode != "same":
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {mode!r}")
    if _pair(stride, "stride", 1) != (1, 1):
        raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
    dil = _pair(dilation, "dilation", 1)
    total = [d * (k - 1) for d, k in zip(dil, weight.shape[2:], strict=True)]
    if total[0] % 2 or total[1] % 2:
        x = pad(x, (0, total[1] % 2, 0, total[0] % 2))
    return x, (total[0] // 2, total[1] // 2)


def _conv_params(stride, padding, dilation, groups) -> _ConvParams:
    if int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return _ConvParams(
        _pair(stride, "stride", 1),
        _pair(padding, "padding", 0),
        _pair(dilation, "dilation", 1),
        int(groups),
    )


@_unbatched
def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Tensor:
    """Transposed conv of input (N, C, H, W) with weight (C, C_out/groups, kh, kw): the
    gradient of conv2d with respect to its input.

    OH = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1.
    """
    name = "conv_transpose2d"
    _check_4d(name, input)
    if weight.ndim != 4:
        raise RuntimeError(
            f"{name}: expected a 4-D weight (C, C_out/groups, kh, kw), got {weight.shape}"
        )
    _check_float(name, input, weight, bias)
    p = _conv_params(stride, padding, dilation, groups)
    op = _pair(output_padding, "output_padding", 0)
    N, C, H, W = input.shape
    Ci, Cog, kh, kw = weight.shape
    if Ci != C or C % groups:
        raise RuntimeError(
            f"{name}: input of shape {input.shape} has {C} channels, weight of shape "
            f"{weight.shape} expects {Ci}; the channel count must be divisible by groups={groups}"
        )
    for o, s, d in zip(op, p.stride, p.dilation, strict=True):
        if o >= s and o >= d:
            raise ValueError(
                f"{name}: output_padding {op} must be smaller than either stride {p.stride} "
                f"or dilation {p.dilation}"
            )
    Co = Cog * groups
    _check_bias(name, bias, Co)
    out = tuple(
        (n - 1) * s - 2 * q + d * (k - 1) + o + 1
        for n, k, s, q, d, o in zip(
            (H, W), (kh, kw), p.stride, p.padding, p.dilation, op, strict=True
        )
    )
    _check_out(
        name,
        out,
        input,
        kernel=(kh, kw),
        stride=p.stride,
        padding=p.padding,
        dilation=p.dilation,
        output_padding=op,
    )
    # With output_padding >= stride (allowed when dilation is larger) the matching conv of the
    # output has more rows than the input: those rows get zero gradient-input, i.e. zero padding.
    conv_hw = tuple(
        _conv_out(n, k, s, q, d)
        for n, k, s, q, d in zip(out, (kh, kw), p.stride, p.padding, p.dilation, strict=True)
    )
    if conv_hw != (H, W):
        input = pad(input, (0, conv_hw[1] - W, 0, conv_hw[0] - H))
    y = Conv2dGradInput(p, (N, Co) + out)(input, weight)
    if bias is not None:
        y = y + reshape(bias, (1, Co, 1, 1))
    return y


# Max pooling -------------------------------------------------------------------------------
class _PoolGeometry:
    """Window geometry of one pooling call, plus the stored argmax for max pooling."""

    def __init__(self, x_shape, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
        self.x_shape = tuple(x_shape)
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.argmax = None
        self._flat = None

    @property
    def window(self) -> tuple:
        """(kh, kw, sy, sx, ph, pw): the kernels' positional window arguments."""
        return self.kernel + self.stride + self.padding

    def flat_indices(self, device):
        """PyTorch's return_indices: for each output, the flat index into H*W (-1: none)."""
        if self._flat is None:
            kern = _kernels(device)
            self._flat = kern.max_pool2d_indices(
                self.argmax, self.x_shape, *self.window, *self.dilation
            )
        return self._flat


class MaxPool2d(Function):
    saves_inputs = False

    def __init__(self, geo: _PoolGeometry):
        self.geo = geo

    def forward(self, x):
        g = self.geo
        y, g.argmax = _kernels(self.device).max_pool2d_forward(
            x, *g.window, *g.dilation, g.ceil_mode
        )
        return y

    def backward(self, gy):
        return MaxPool2dGrad(self.geo)(gy)


class MaxPool2dGrad(Function):
    """Scatter gy into the argmax of each window (summing where windows overlap)."""

    saves_inputs = False

    def __init__(self, geo: _PoolGeometry):
        self.geo = geo

    def forward(self, gy):
        g = self.geo
        return _kernels(self.device).max_pool2d_backward(
            gy, g.argmax, g.x_shape, *g.window, *g.dilation
        )

    def backward(self, ggx):
        return MaxPool2dGather(self.geo)(ggx)


class MaxPool2dGather(Function):
    """Read x at each window's stored argmax: the adjoint of `MaxPool2dGrad`."""

    saves_inputs = False

    def __init__(self, geo: _PoolGeometry):
        self.geo = geo

    def forward(self, x):
        xp = self.xp
        idx = self.geo.flat_indices(self.device)
        N, C, OH, OW = idx.shape
        flat = idx.reshape(N, C, OH * OW)
        y = xp.take_along_axis(x.reshape(N, C, -1), xp.maximum(flat, 0), axis=2)
        y = y.reshape(N, C, OH, OW)
        if self.geo.padding != (0, 0) or self.geo.ceil_mode:
            y[idx < 0] = 0  # windows lying entirely in the padding have no argmax
        return y

    def backward(self, gy):
        return MaxPool2dGrad(self.geo)(gy)


def _pool_window(kernel_size, stride, padding, dilation=1):
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None or stride == [] else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    for k, q, d in zip(kernel, padding, dilation, strict=True):
        if q > (d * (k - 1) + 1) // 2:
            raise ValueError(
                f"pad should be at most half of effective kernel size, but got pad={padding}, "
                f"kernel_size={kernel} and dilation={dilation}"
            )
    return kernel, stride, padding, dilation


@_unbatched
def max_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each (dilated) window; padding counts as -inf. With `return_indices`, also the
    int64 flat index into H*W of each maximum (PyTorch's layout, usable by max_unpool2d)."""
    name = "max_pool2d"
    _check_4d(name, input)
    _check_float(name, input)
    kernel, stride, padding, dilation = _pool_window(kernel_size, stride, padding, dilation)
    H, W = input.shape[2:]
    out = tuple(
        _pool_out(n, k, s, q, d, ceil_mode)
        for n, k, s, q, d in zip((H, W), kernel, stride, padding, dilation, strict=True)
    )
    _check_out(
        name, out, input, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation
    )
    geo = _PoolGeometry(input.shape, kernel, stride, padding, dilation, bool(ceil_mode))
    y = MaxPool2d(geo)(input)
    if not return_indices:
        return y
    return y, Tensor._wrap(geo.flat_indices(input.device), input.device)


# Average pooling ---------------------------------------------------------------------------
class AvgPool2d(Function):
    saves_inputs = False

    def __init__(self, geo: _PoolGeometry, count_include_pad: bool):
        self.geo, self.count_include_pad = geo, count_include_pad

    def forward(self, x):
        return _kernels(self.device).avg_pool2d_forward(x, *self.geo.window, self.count_include_pad)

    def backward(self, gy):
        return AvgPool2dGrad(self.geo, self.count_include_pad)(gy)


class AvgPool2dGrad(Function):
    """Spread gy / divisor over each window: the adjoint of `AvgPool2d`."""

    saves_inputs = False

    def __init__(self, geo: _PoolGeometry, count_include_pad: bool):
        self.geo, self.count_include_pad = geo, count_include_pad

    def forward(self, gy):
        return _kernels(self.device).avg_pool2d_backward(
            gy, self.geo.x_shape, *self.geo.window, self.count_include_pad
        )

    def backward(self, ggx):
        return AvgPool2d(self.geo, self.count_include_pad)(ggx)


def _avg_divisors(H, W, out, kernel, stride, padding, count_include_pad) -> numpy.ndarray:
    """PyTorch's per-window divisor (OH, OW): windows are clipped to the padded input, and
    to the input itself unless count_include_pad."""

    def lengths(O, n, k, s, q):
        start = numpy.arange(O) * s - q
        end = numpy.minimum(start + k, n + q)
        if not count_include_pad:
            start, end = numpy.maximum(start, 0), numpy.minimum(end, n)
        return end - start

    args = zip(out, (H, W), kernel, stride, padding, strict=True)
    rows, cols = (lengths(*a) for a in args)
    return numpy.outer(rows, cols)


@_unbatched
def avg_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over each window, zero padding (counted in the divisor when count_include_pad)."""
    name = "avg_pool2d"
    _check_4d(name, input)
    _check_float(name, input)
    kernel, stride, padding, _ = _pool_window(kernel_size, stride, padding)
    H, W = input.shape[2:]
    out = tuple(
        _pool_out(n, k, s, q, 1, ceil_mode)
        for n, k, s, q in zip((H, W), kernel, stride, padding, strict=True)
    )
    _check_out(name, out, input, kernel_size=kernel, stride=stride, padding=padding)
    if divisor_override is not None and divisor_override <= 0:
        raise ValueError(f"divisor_override must be positive, got {divisor_override}")
    if not ceil_mode and divisor_override is None:
        geo = _PoolGeometry(input.shape, kernel, stride, padding)
        return AvgPool2d(geo, bool(count_include_pad))(input)
    # Ceil mode or a fixed divisor: the window mean over an explicitly zero-padded input,
    # rescaled to PyTorch's divisor per window.
    extra = tuple(
        max((o - 1) * s + k - (n + 2 * q), 0)
        for o, s, k, n, q in zip(out, stride, kernel, (H, W), padding, strict=True)
    )
    x = pad(input, (padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]))
    geo = _PoolGeometry(x.shape, kernel, stride, (0, 0))
    mean = AvgPool2d(geo, True)(x)
    if divisor_override is not None:
        div = numpy.full(out, float(divisor_override))
    else:
        div = _avg_divisors(H, W, out, kernel, stride, padding, count_include_pad)
    scale = (kernel[0] * kernel[1] / div).astype(input.dtype)
    return mean * Tensor._wrap(input.xp.asarray(scale), input.device)


def _output_size_pair(output_size, H: int, W: int) -> tuple[int, int]:
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
        oh, ow = output_size
    else:
        oh = ow = output_size
    oh, ow = H if oh is None else int(oh), W if ow is None else int(ow)
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return oh, ow


def _adaptive_matrix(out: int, n: int, dtype) -> numpy.ndarray:
    """(out, n): row i averages input cells [floor(i n / out), ceil((i + 1) n / out))."""
    i = numpy.arange(out)
    start = (i * n) // out
    end = -((-(i + 1) * n) // out)
    j = numpy.arange(n)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


@_unbatched
def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed output size, with PyTorch's windows [floor(i H / OH),
    ceil((i + 1) H / OH)). A plain avg_pool2d when the sizes divide; two small matmuls
    otherwise."""
    name = "adaptive_avg_pool2d"
    _check_4d(name, input)
    _check_float(name, input)
    H, W = input.shape[2:]
    oh, ow = _output_size_pair(output_size, H, W)
    if H % oh == 0 and W % ow == 0:
        if (oh, ow) == (1, 1):
            return input.mean((2, 3), keepdim=True)
        return avg_pool2d(input, (H // oh, W // ow))
    xp, dev = input.xp, input.device
    rows = Tensor._wrap(xp.asarray(_adaptive_matrix(oh, H, input.dtype)), dev)
    cols = Tensor._wrap(xp.asarray(_adaptive_matrix(ow, W, input.dtype).T.copy()), dev)
    return matmul(rows, matmul(input, cols))


# Resizing ----------------------------------------------------------------------------------
def _resize_sizes(x: Tensor, size, scale_factor) -> tuple[tuple[int, ...], tuple]:
    """Output spatial size and per-dimension scale factors (None where `size` was given)."""
    spatial = x.shape[2:]
    k = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size or scale_factor")
    if size is not None:
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * k
        if len(sizes) != k:
            raise ValueError(f"interpolate: size {size} does not match input of shape {x.shape}")
        sizes = tuple(int(s) for s in sizes)
        scales = (None,) * k
    else:
        scales = (
            tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * k
        )
        if len(scales) != k:
            raise ValueError(
                f"interpolate: scale_factor {scale_factor} does not match input of shape {x.shape}"
            )
        scales = tuple(float(s) for s in scales)
        sizes = tuple(int(math.floor(n * s)) for n, s in zip(spatial, scales, strict=True))
    if min(sizes) < 1:
        raise ValueError(f"interpolate: output size {sizes} is too small for input {x.shape}")
    return sizes, scales


def _nearest_index(n_in: int, n_out: int, scale, exact: bool) -> numpy.ndarray:
    """PyTorch's nearest source index (computed in float32, like its CPU kernel)."""
    s = numpy.float32(1.0 / scale if scale else n_in / n_out)
    dst = numpy.arange(n_out, dtype=numpy.float32)
    src = numpy.floor(((dst + numpy.float32(0.5)) if exact else dst) * s)
    return numpy.minimum(src.astype(numpy.int64), n_in - 1)


def _linear_matrix(n_in: int, n_out: int, scale, align_corners: bool, dtype) -> numpy.ndarray:
    """(n_out, n_in) linear-interpolation weights, PyTorch's source-index rule."""
    dst = numpy.arange(n_out, dtype=numpy.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        s = 1.0 / scale if scale else n_in / n_out
        src = numpy.maximum((dst + 0.5) * s - 0.5, 0.0)
    i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), n_in - 1)
    i1 = numpy.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = numpy.zeros((n_out, n_in))
    rows = numpy.arange(n_out)
    numpy.add.at(m, (rows, i0), 1.0 - lam)
    numpy.add.at(m, (rows, i1), lam)
    return m.astype(dtype)


def _cubic_matrix(n_in: int, n_out: int, scale, align_corners: bool, dtype) -> numpy.ndarray:
    """(n_out, n_in) bicubic weights: PyTorch's cubic convolution (A = -0.75) over the four
    nearest source pixels, the source index not clamped, the pixels clamped to the border."""
    a = -0.75
    dst = numpy.arange(n_out, dtype=numpy.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (dst + 0.5) * (1.0 / scale if scale else n_in / n_out) - 0.5
    i0 = numpy.floor(src).astype(numpy.int64)
    t = src - i0

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    m = numpy.zeros((n_out, n_in))
    rows = numpy.arange(n_out)
    for offset, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
        numpy.add.at(m, (rows, numpy.clip(i0 + offset, 0, n_in - 1)), w)
    return m.astype(dtype)


def _separable(x: Tensor, sizes, scales, align_corners: bool, matrix) -> Tensor:
    """Resize each spatial dimension in turn by a (n_out, n_in) weight matrix (linear, bilinear,
    trilinear and bicubic are all this): one matmul per dimension, differentiable."""
    xp, dev = x.xp, x.device
    k = x.ndim - 2
    for d, (n_out, scale) in enumerate(zip(sizes, scales, strict=True)):
        n_in = x.shape[2 + d]
        m = matrix(n_in, n_out, scale, align_corners, x.dtype).T.copy()  # (n_in, n_out)
        m = Tensor._wrap(xp.asarray(m), dev)
        if d == k - 1:
            x = matmul(x, m)
        else:
            x = matmul(x.transpose(2 + d, -1), m).transpose(2 + d, -1)
    return x


def _nearest(x: Tensor, sizes, scales, exact: bool) -> Tensor:
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    idx = [_nearest_index(n, o, s, exact) for n, o, s in zip(spatial, sizes, scales, strict=True)]
    reps = [o // n if o % n == 0 else 0 for n, o in zip(spatial, sizes, strict=True)]
    if all(
        r and numpy.array_equal(i, numpy.arange(o) // r)
        for i, r, o in zip(idx, reps, sizes, strict=True)
    ):
        # Integer upscaling: a broadcast (gradient: a sum), much faster than a scatter-add.
        inter, target = [N, C], [N, C]
        for n, r in zip(spatial, reps, strict=True):
            inter += [n, 1]
            target += [n, r]
        return reshape(broadcast_to(reshape(x, inter), target), (N, C) + tuple(sizes))
    k = len(spatial)
    index = [slice(None), slice(None)]
    for d, i in enumerate(idx):
        shape = [1] * k
        shape[d] = len(i)
        index.append(i.reshape(shape))
    return getitem(x, tuple(index))


def interpolate(
    input: Tensor,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize (N, C, L), (N, C, H, W) or (N, C, D, H, W) with PyTorch's index rules.

    Modes: "nearest" (src = floor(dst / scale)) and "nearest-exact" for any of them; "linear"
    (3-D), "bilinear" and "bicubic" (4-D), "trilinear" (5-D), each a weight matrix per spatial
    dimension. A given scale_factor is used for the source indices unless
    recompute_scale_factor.
    """
    if input.ndim not in (3, 4, 5):
        raise ValueError(f"interpolate: expected a 3-D, 4-D or 5-D input, got shape {input.shape}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    _check_float("interpolate", input)
    sizes, scales = _resize_sizes(input, size, scale_factor)
    if recompute_scale_factor:
        scales = (None,) * len(sizes)
    if mode in ("nearest", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(f"align_corners only applies to linear modes, not {mode!r}")
        return _nearest(input, sizes, scales, mode == "nearest-exact")
    ndim = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}.get(mode)
    if ndim is None:
        raise ValueError(
            f"interpolate: unsupported mode {mode!r}; expected 'nearest', 'nearest-exact', "
            "'linear', 'bilinear', 'bicubic' or 'trilinear'"
        )
    if input.ndim != ndim:
        raise ValueError(f"interpolate: {mode} expects a {ndim}-D input, got {input.shape}")
    matrix = _cubic_matrix if mode == "bicubic" else _linear_matrix
    return _separable(input, sizes, scales, bool(align_corners), matrix)


def upsample(
    input: Tensor,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """Deprecated PyTorch alias of `interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)
