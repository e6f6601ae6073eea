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
import sys
from typing import Sequence

import numpy

import kernels
from kernels import geometry, parallel
from kernels.geometry import Geometry

from ..autocast_mode import autocast_op as _autocast_op
from ..autocast_mode import cast_inputs as _cast_inputs
from ..autocast_mode import is_active as _autocast_active
from ..autocast_mode import native_op as _native_op
from ..autograd import Function, _has_hooks, is_grad_enabled
from ..device import on_device
from ..dtypes import is_low_precision
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase
from .linalg import einsum, matmul
from .math import ReLU, _cut
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


def _in_float32(kernel, *args):
    """`kernel(*args)`; on the CPU, float16/bfloat16 arrays go in as float32 and the result is
    rounded back: the tensor-core recipe (half inputs, float32 products and sums, one rounding
    of the output), so low precision there saves no time, only keeps the numerics honest.
    Pooling too (max is exact in any dtype; an average is summed in float32). A tuple result
    (conv's kept columns, max pooling's argmax) rounds its float arrays too: the columns are
    the input's own values rearranged, so the low dtype holds them exactly, at half the memory
    the graph keeps until backward (the weight gradient widens them again for its product).
    A backend with kernels of its own in the low dtypes (``kernels.gpu``: float32 sums inside
    its RawKernels and cuBLAS GEMMs) is called directly (:func:`_kernel`): its columns and
    outputs stay in the low dtype, half the memory of float32."""
    dtypes = [a.dtype for a in args if hasattr(a, "dtype")]
    low = next((d for d in dtypes if is_low_precision(d)), None)
    if low is None:
        return kernel(*args)
    f32 = numpy.float32
    out = kernel(*(a.astype(f32) if getattr(a, "dtype", None) == low else a for a in args))
    if isinstance(out, tuple):
        return tuple(_round_float32(o, low) for o in out)
    return out.astype(low)


def _kernel(fn: Function, name: str, dtype):
    """The device's kernel ``name`` for data of ``dtype``: the kernel itself, or on a backend
    without kernels of its own in float16/bfloat16 (the CPU; ``kernels.gpu`` has them, its
    ``LOW_PRECISION_KERNELS``) that kernel run in float32 (:func:`_in_float32`). Returned, not
    called, so the op reaches its kernel with no frame between (benchmarks.call_depth)."""
    backend = kernels.backend(fn.device.type)
    kern = getattr(backend, name)
    if is_low_precision(dtype) and not getattr(backend, "LOW_PRECISION_KERNELS", False):
        return functools.partial(_in_float32, kern)
    return kern


def _round_float32(a, low):
    return a.astype(low) if getattr(a, "dtype", None) == numpy.float32 else a


def _check_float(name: str, *tensors: TensorBase | None) -> None:
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if _kind(t.dtype) != "f":
            raise TypeError(f"{name}: expected floating point tensors, got dtype {t.dtype}")
    if len({t.dtype for t in ts}) > 1:
        raise TypeError(
            f"{name}: input and weight/bias dtypes differ: {[str(t.dtype) for t in ts]}"
        )


def _check_bias(name: str, bias: TensorBase | None, channels: int) -> None:
    if bias is not None and bias.shape != (channels,):
        raise RuntimeError(
            f"{name}: bias must have shape ({channels},) for {channels} output channels, "
            f"got {bias.shape}"
        )


def _per_image(fn, x: TensorBase, *args):
    """``fn`` on a (C, H, W) input, as PyTorch accepts it: a batch of one added and removed."""
    out = fn(unsqueeze(x, 0), *args)
    if isinstance(out, tuple):
        return tuple(squeeze(o, 0) for o in out)
    return squeeze(out, 0)


# Convolution -------------------------------------------------------------------------------
class Conv2d(Function):
    """y = conv(x, w) (+ b): cross-correlation, PyTorch semantics.

    With ``keep_cols`` (the weight needs a gradient) the forward's im2col columns are kept
    here, owned by this node and freed with the graph, for the weight gradient.
    """

    def __init__(self, geo: Geometry, keep_cols: bool = False):
        self.geo, self.keep_cols = geo, keep_cols
        self.cols = None

    def forward(self, x, w, b=None):
        kern = _kernel(self, "conv2d_forward", x.dtype)
        y, self.cols = kern(x, w, b, self.geo, self.keep_cols)
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        gyt = self._shared_gy_t(gy, x.requires_grad or w.requires_grad)
        gx = Conv2dGradInput(self.geo, gyt)(gy, w) if x.requires_grad else None
        gw = Conv2dGradWeight(self.geo, self.cols, gyt)(x, gy) if w.requires_grad else None
        if len(self.inputs) < 3 or not self.inputs[2].requires_grad:
            return gx, gw, None
        if gyt is not None:  # the bias gradient: row sums of the transposed gy, one reduction
            return gx, gw, gy._new(gyt.reshape(self.geo.K, -1).sum(axis=1), gy.device)
        # The bias gradient: one formula for both modes (Function.operands).
        _, g = self.operands(gy)
        return (gx, gw) + self.results(gy, _channel_sum(g, self.xp))

    def _shared_gy_t(self, gy, needed: bool):
        """On cuda, when the backward is not recorded: gy transposed once into the layout both
        backward GEMMs read (kernels.gpu.gy_t), for the input, weight and bias gradients;
        else None (each kernel makes its own)."""
        if not needed or is_grad_enabled() or not _raw_cuda(self.device, gy.dtype):
            return None
        return kernels.backend("cuda").gy_t(gy.array, self.geo)

    def _release(self) -> None:
        # The graph is freed and nothing else holds the columns: their buffer goes back to
        # the kernels for the next conv's columns.
        cols, device = self.cols, self.device
        super()._release()
        if cols is not None:
            kernels.backend(device.type).give_back(cols)


def _channel_sum(g, xp):
    """g (N, C, H, W) summed over batch and pixels: raw arrays, or Tensors when the backward is
    recorded. NumPy float32/64 sums go through einsum, 3x faster than ``sum(axis=(0, 2, 3))``,
    which strides across the batch for every channel."""
    if xp is numpy and g.dtype in (numpy.float32, numpy.float64):
        return (numpy.einsum if isinstance(g, numpy.ndarray) else einsum)("nchw->c", g)
    return g.sum((0, 2, 3))


class Conv2dGradInput(Function):
    """gx = conv's input gradient of gy for weight w: the transposed convolution."""

    def __init__(self, geo: Geometry, gyt=None, keep_gyt: bool = False):
        # gyt: gy already transposed by Conv2d.backward (cuda). keep_gyt (conv_transpose2d,
        # weight wanting a gradient): keep the transposed input for this node's weight gradient.
        self.geo, self.gyt, self.keep_gyt = geo, gyt, keep_gyt

    def forward(self, gy, w):
        if self.gyt is None and self.keep_gyt and _raw_cuda(self.device, gy.dtype):
            self.gyt = kernels.backend("cuda").gy_t(gy, self.geo)
        if self.gyt is not None:  # transposed by Conv2d.backward, or kept (conv_transpose2d)
            gyt, self.gyt = self.gyt, (self.gyt if self.keep_gyt else None)
            return kernels.backend("cuda").conv2d_backward_input(gy, w, self.geo, gyt=gyt)
        return _kernel(self, "conv2d_backward_input", gy.dtype)(gy, w, self.geo)

    def backward(self, ggx):
        # <ggx, T(gy, w)> = <conv(ggx, w), gy>: differentiate that in gy and in w.
        gy, w = self.inputs
        # Not recorded, both wanted: conv(ggx, w) keeps its columns of ggx (on the CPU's
        # strided Winograd path its transformed tiles) for the weight gradient, which then
        # hands them back (this conv is no graph node: nothing releases it).
        share = gy.requires_grad and w.requires_grad and not is_grad_enabled()
        keep = share and (self.device.type == "cpu" or _raw_cuda(self.device, ggx.dtype))
        conv = Conv2d(self.geo, keep_cols=keep)
        g_gy = conv(ggx, w) if gy.requires_grad else None
        gyt = None if is_grad_enabled() else self.gyt
        g_w = Conv2dGradWeight(self.geo, conv.cols, gyt)(ggx, gy) if w.requires_grad else None
        if conv.cols is not None and self.device.type == "cpu":  # cuda: as before
            kernels.backend(self.device.type).give_back(conv.cols)
        return g_gy, g_w


def _raw_cuda(device, dtype) -> bool:
    """Whether the cuda kernels take this dtype as it is (not through a float32 cast), so a
    backward may share their intermediates (gy transposed, the columns): float32/float64, and
    float16/bfloat16 too where the backend runs them itself (kernels.gpu's
    LOW_PRECISION_KERNELS)."""
    if device.type != "cuda":
        return False
    if is_low_precision(dtype):
        return getattr(kernels.backend("cuda"), "LOW_PRECISION_KERNELS", False)
    return dtype.name in ("float32", "float64")


class Conv2dGradWeight(Function):
    """gw = conv's weight gradient of gy for input x (from the forward's columns of x when
    the conv kept them)."""

    def __init__(self, geo: Geometry, cols=None, gyt=None):
        self.geo, self.cols, self.gyt = geo, cols, gyt

    def forward(self, x, gy):
        if self.gyt is not None:  # gy already transposed by Conv2d.backward (cuda)
            gyt, self.gyt = self.gyt, None
            backend = kernels.backend("cuda")
            gw = backend.conv2d_backward_weight(gy, x, self.geo, self.cols, gyt=gyt)
        else:
            gw = _kernel(self, "conv2d_backward_weight", x.dtype)(gy, x, self.geo, self.cols)
        self.cols = None  # the Conv2d node owns them; this node's backward never reads them
        return gw

    def backward(self, ggw):
        # <ggw, W(x, gy)> = <conv(x, ggw), gy>.
        x, gy = self.inputs
        g_x = Conv2dGradInput(self.geo)(gy, ggw) if x.requires_grad else None
        g_gy = Conv2d(self.geo)(x, ggw) if gy.requires_grad else None
        return g_x, g_gy


def conv2d(
    input: TensorBase,
    weight: TensorBase,
    bias: TensorBase | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> TensorBase:
    """2-D cross-correlation of input (N, C, H, W) with weight (C_out, C/groups, kh, kw).

    Output (N, C_out, OH, OW), OH = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1.
    `padding` may also be "valid" (no padding) or "same" (output size = input size, stride 1).
    """
    if _autocast_active():  # inline, not the decorator: no frame between a layer and its kernel
        input, weight, bias = _cast_inputs("conv2d", input, weight, bias)
    if input.ndim == 3:
        return _per_image(conv2d, input, weight, bias, stride, padding, dilation, groups)
    name = "conv2d"
    _check_float(name, input, weight, bias)
    if isinstance(padding, str):
        geometry.string_padding(padding, stride, name)
        mode, padding = padding, 0
        if mode == "same" and weight.ndim == 4:
            padding, (bottom, right) = geometry.same_padding(weight.shape[2:], dilation)
            if bottom or right:  # an odd total: the extra row/column at the bottom/right
                input = pad(input, (0, right, 0, bottom))
    geo = geometry.conv2d(input.shape, weight.shape, stride, padding, dilation, groups)
    _check_bias(name, bias, geo.K)
    fn = Conv2d(geo, keep_cols=weight.requires_grad and is_grad_enabled())
    return fn(input, weight) if bias is None else fn(input, weight, bias)


@_autocast_op("conv_transpose2d")
def conv_transpose2d(
    input: TensorBase,
    weight: TensorBase,
    bias: TensorBase | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> TensorBase:
    """Transposed conv of input (N, C, H, W) with weight (C, C_out/groups, kh, kw): the
    gradient of conv2d with respect to its input.

    OH = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1.
    """
    if input.ndim == 3:
        args = (weight, bias, stride, padding, output_padding, groups, dilation)
        return _per_image(conv_transpose2d, input, *args)
    name = "conv_transpose2d"
    _check_float(name, input, weight, bias)
    geo, (bottom, right) = geometry.conv_transpose2d(
        input.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    _check_bias(name, bias, geo.C)
    if bottom or right:
        # output_padding >= stride: the matching conv has more outputs than the input has
        # pixels; those get zero gradient-input, i.e. zero padding.
        input = pad(input, (0, right, 0, bottom))
    y = Conv2dGradInput(geo, keep_gyt=weight.requires_grad and is_grad_enabled())(input, weight)
    return y if bias is None else ChannelBias()(y, bias)


class ChannelBias(Function):
    """y + b over dim 1 of (N, C, H, W). Its backward sums gy straight to b's shape (C,):
    broadcasting through a reshape would hand b a view, which autograd copies for ``.grad``."""

    def forward(self, y, b):
        b = b.reshape(1, -1, 1, 1)
        if not _cut(self.xp, y):
            return y + b
        out = numpy.empty_like(y, dtype=numpy.result_type(y, b))
        parallel.each_span(lambda s: numpy.add(y[s], b, out=out[s]), len(y), y.nbytes)
        return out

    def backward(self, gy):
        _, g = self.operands(gy)
        wanted = [t.requires_grad for t in self.inputs]
        gb = _channel_sum(g, self.xp) if wanted[1] else None
        return (gy if wanted[0] else None,) + self.results(gy, gb)


# Max pooling -------------------------------------------------------------------------------
class MaxPool2d(Function):
    """Max over each window; keeps the argmax (window offsets) for its backward."""

    saves_inputs = False

    def __init__(self, geo: Geometry):
        self.geo = geo

    def forward(self, x):
        y, self.argmax = _kernel(self, "max_pool2d_forward", x.dtype)(x, self.geo)
        return y

    def backward(self, gy):
        gx = self._relu_fused_backward(gy)
        if gx is not None:
            return gx
        return MaxPool2dGrad(self.geo, self.argmax)(gy)

    def _relu_fused_backward(self, gy):
        """dL/dx of this pool and the ReLU in front of it at once, or None (the plain path).

        For ``p = max_pool(y)``, ``y = relu(x)``: the ReLU's backward masks the scattered
        gradient by ``y > 0``, and at each window's argmax ``y`` is ``p``. So the mask can be
        applied to gy before the scatter, on a quarter of the floats (2x2 windows), and the
        ReLU's backward then passes the gradient on untouched (`ReLU.premasked`). Bit for bit
        the plain result: every element of gx outside the argmaxes is +0 either way, the
        others ``gy * (p > 0)`` (ties, NaN and signed zeros included); the windows must not
        overlap (a sum of masked gradients can differ from the masked sum in a zero's sign).

        Only when dL/dy goes nowhere but the ReLU: y has no hooks and keeps no .grad, and
        nothing else holds y (another consumer, a pending gradient of it, the caller of
        engine.grad(..., inputs=[y]), a variable): CPython's reference count of y is then
        this node's inputs tuple and this frame's own (`_SOLE_INPUT_REFS`). Any other holder
        makes it higher, and the plain path runs. Also not when recorded
        (create_graph), and not after an in-place change to y or p (the ReLU's backward
        raises then, as it would alone)."""
        g = self.geo
        y = self.inputs[0]
        relu = y.grad_fn
        if (
            type(relu) is not ReLU
            or self.xp is not numpy
            or is_grad_enabled()
            or g.padding != (0, 0)
            or g.dilation != (1, 1)
            or g.sy < g.kh
            or g.sx < g.kw
            or gy.dtype != y.dtype
            or y.dtype not in (numpy.float32, numpy.float64)
            or y._version[0]
            or y._retains_grad
            or _has_hooks(y)
            or sys.getrefcount(y) > _SOLE_INPUT_REFS
        ):
            return None
        p = self._outputs[0]()
        if p is None or p._version[0]:
            return None
        gym = gy.array * (p.array > 0)
        gx = gy._new(kernels.backend("cpu").max_pool2d_backward(gym, self.argmax, g), gy.device)
        relu.premasked = gx
        return gx


def _refs_of_first(inputs: tuple) -> int:
    """sys.getrefcount of inputs[0] bound to a local, as `MaxPool2d._relu_fused_backward`
    reads it."""
    y = inputs[0]
    return sys.getrefcount(y)


# The count for an object that only the inputs tuple holds, measured once on this interpreter
# rather than assumed (3 on CPython 3.11: the tuple, the local, getrefcount's argument).
_SOLE_INPUT_REFS = _refs_of_first((object(),))


class MaxPool2dGrad(Function):
    """Scatter gy into the argmax of each window (summing where windows overlap)."""

    saves_inputs = False

    def __init__(self, geo: Geometry, argmax):
        self.geo, self.argmax = geo, argmax

    def forward(self, gy):
        return _kernel(self, "max_pool2d_backward", gy.dtype)(gy, self.argmax, self.geo)

    def backward(self, ggx):
        return MaxPool2dGather(self.geo, self.argmax)(ggx)


class MaxPool2dGather(Function):
    """Read x at each window's argmax: the adjoint of `MaxPool2dGrad`."""

    saves_inputs = False

    def __init__(self, geo: Geometry, argmax):
        self.geo, self.argmax = geo, argmax

    def forward(self, x):
        xp, g = self.xp, self.geo
        idx = g.indices(self.argmax, xp)
        flat = idx.reshape(g.N, g.C, g.OH * g.OW)
        y = xp.take_along_axis(x.reshape(g.N, g.C, -1), xp.maximum(flat, 0), axis=2)
        y = y.reshape(g.y_shape)
        if g.padding != (0, 0) or g.ceil_mode:
            y[idx < 0] = 0  # windows lying entirely in the padding have no argmax
        return y

    def backward(self, gy):
        return MaxPool2dGrad(self.geo, self.argmax)(gy)


def max_pool2d(
    input: TensorBase,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each (dilated) window; padding counts as -inf. With `return_indices`, also the
    int64 flat index into H*W of each maximum (PyTorch's layout, usable by max_unpool2d)."""
    if input.ndim == 3:
        args = (kernel_size, stride, padding, dilation, ceil_mode, return_indices)
        return _per_image(max_pool2d, input, *args)
    _check_float("max_pool2d", input)
    geo = geometry.pool2d(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    fn = MaxPool2d(geo)
    y = fn(input)
    if not return_indices:
        return y
    return y, input._new(geo.indices(fn.argmax, input.xp), input.device)


# Average pooling ---------------------------------------------------------------------------
class AvgPool2d(Function):
    saves_inputs = False

    def __init__(self, geo: Geometry):
        self.geo = geo

    def forward(self, x):
        return _kernel(self, "avg_pool2d_forward", x.dtype)(x, self.geo)

    def backward(self, gy):
        return AvgPool2dGrad(self.geo)(gy)


class AvgPool2dGrad(Function):
    """Spread gy / divisor over each window: the adjoint of `AvgPool2d`."""

    saves_inputs = False

    def __init__(self, geo: Geometry):
        self.geo = geo

    def forward(self, gy):
        return _kernel(self, "avg_pool2d_backward", gy.dtype)(gy, self.geo)

    def backward(self, ggx):
        return AvgPool2d(self.geo)(ggx)


def avg_pool2d(
    input: TensorBase,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> TensorBase:
    """Mean over each window, zero padding (counted in the divisor when count_include_pad)."""
    if input.ndim == 3:
        args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return _per_image(avg_pool2d, input, *args)
    _check_float("avg_pool2d", input)
    geo = geometry.pool2d(
        input.shape, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
        divisor_override, name="avg_pool2d",
    )  # fmt: skip
    return AvgPool2d(geo)(input)


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


@_native_op
def adaptive_avg_pool2d(input: TensorBase, output_size) -> TensorBase:
    """Average pooling to a fixed output size, with PyTorch's windows [floor(i H / OH),
    ceil((i + 1) H / OH)). A plain avg_pool2d when the sizes divide; two small matmuls
    otherwise."""
    if input.ndim == 3:
        return _per_image(adaptive_avg_pool2d, input, output_size)
    name = "adaptive_avg_pool2d"
    geometry.check_4d(name, input.shape)
    _check_float(name, input)
    H, W = input.shape[2:]
    oh, ow = _output_size_pair(output_size, H, W)
    if H % oh == 0 and W % ow == 0:
        if (oh, ow) == (1, 1):
            return input.mean((2, 3), keepdim=True)
        return avg_pool2d(input, (H // oh, W // ow))
    xp, dev = input.xp, input.device
    rows = input._new(xp.asarray(_adaptive_matrix(oh, H, input.dtype)), dev)
    cols = input._new(xp.asarray(_adaptive_matrix(ow, W, input.dtype).T.copy()), dev)
    return matmul(rows, matmul(input, cols))


# Resizing ----------------------------------------------------------------------------------
def _resize_sizes(x: TensorBase, size, scale_factor) -> tuple[tuple[int, ...], tuple]:
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


def _separable(x: TensorBase, sizes, scales, align_corners: bool, matrix) -> TensorBase:
    """Resize each spatial dimension in turn by a (n_out, n_in) weight matrix (linear, bilinear,
    trilinear and bicubic are all this): one matmul per dimension, differentiable."""
    xp, dev = x.xp, x.device
    k = x.ndim - 2
    for d, (n_out, scale) in enumerate(zip(sizes, scales, strict=True)):
        n_in = x.shape[2 + d]
        m = matrix(n_in, n_out, scale, align_corners, x.dtype).T.copy()  # (n_in, n_out)
        m = x._new(xp.asarray(m), dev)
        if d == k - 1:
            x = matmul(x, m)
        else:
            x = matmul(x.transpose(2 + d, -1), m).transpose(2 + d, -1)
    return x


def _nearest(x: TensorBase, sizes, scales, exact: bool) -> TensorBase:
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


@on_device  # its index and weight matrices are built on the input's GPU
@_native_op
def interpolate(
    input: TensorBase,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> TensorBase:
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
    input: TensorBase,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> TensorBase:
    """Deprecated PyTorch alias of `interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)
