"""Convolution and pooling ops built on the 2-D ones, so there is one set of kernels:

- the 1-D forms run the 2-D kernels on a size-1 height;
- the 3-D forms gather each output depth's window of input depths (an im2col along depth,
  folded into the batch and channels) and run the 2-D kernels on that: conv3d is one conv2d
  over (N*OD, C*KD, H, W); max/avg pooling pool each depth slice in 2-D, then reduce over the
  window's depths (a box window is separable); conv_transpose3d is conv_transpose2d per input
  depth followed by a scatter-add of the kernel's depths (its adjoint);
- adaptive max-pooling is a gather over padded windows and max-unpooling a scatter.

Everything goes through differentiable engine ops, so gradients (and double backward) follow.
"""

from __future__ import annotations

import math

import numpy

from kernels import geometry
from kernels.geometry import ntuple, pair, transposed_size, window_lengths

from ..autocast_mode import autocast_op as _autocast_op
from ..device import on_device
from ..tensorbase import TensorBase
from .conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d
from .indexing import scatter, scatter_add
from .math import where
from .reduction import sum
from .shape import getitem, pad, permute, reshape, squeeze, unsqueeze

__all__ = [
    "conv1d",
    "conv_transpose1d",
    "max_pool1d",
    "avg_pool1d",
    "adaptive_max_pool2d",
    "max_unpool2d",
    "conv3d",
    "conv_transpose3d",
    "max_pool3d",
    "avg_pool3d",
]


def _single(value, name: str, minimum: int) -> int:
    """An int, or a 1-tuple of one (PyTorch's `_single`): :func:`kernels.geometry.ntuple`."""
    return ntuple(value, 1, name, minimum)[0]


def _as_2d(name: str, input: TensorBase, weight: TensorBase | None = None):
    """(N, C, 1, L) from a batched (N, C, L) or unbatched (C, L) input; whether it was batched."""
    if input.ndim not in (2, 3):
        raise RuntimeError(
            f"{name}: expected a 2-D (C, L) or 3-D (N, C, L) input, got {input.shape}"
        )  # noqa: E501
    if weight is not None and weight.ndim != 3:
        raise RuntimeError(f"{name}: expected a 3-D weight, got shape {weight.shape}")
    batched = input.ndim == 3
    return unsqueeze(input if batched else unsqueeze(input, 0), 2), batched


def _as_1d(out: TensorBase, batched: bool) -> TensorBase:
    out = squeeze(out, 2)
    return out if batched else squeeze(out, 0)


@_autocast_op("conv1d")
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D cross-correlation of (N, C, L) with weight (C_out, C/groups, k); `padding` may be
    an int or "valid" / "same"."""
    x, batched = _as_2d("conv1d", input, weight)
    pad = padding if isinstance(padding, str) else (0, _single(padding, "padding", 0))
    y = conv2d(
        x,
        unsqueeze(weight, 2),
        bias,
        (1, _single(stride, "stride", 1)),
        pad,
        (1, _single(dilation, "dilation", 1)),
        groups,
    )
    return _as_1d(y, batched)


@_autocast_op("conv_transpose1d")
def conv_transpose1d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1
):
    """Transposed 1-D convolution of (N, C, L) with weight (C, C_out/groups, k)."""
    x, batched = _as_2d("conv_transpose1d", input, weight)
    y = conv_transpose2d(
        x,
        unsqueeze(weight, 2),
        bias,
        (1, _single(stride, "stride", 1)),
        (0, _single(padding, "padding", 0)),
        (0, _single(output_padding, "output_padding", 0)),
        groups,
        (1, _single(dilation, "dilation", 1)),
    )
    return _as_1d(y, batched)


def max_pool1d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each window of (N, C, L); with `return_indices` also the int64 index into L."""
    x, batched = _as_2d("max_pool1d", input)
    k = _single(kernel_size, "kernel_size", 1)
    s = k if stride is None or stride == [] else _single(stride, "stride", 1)
    out = max_pool2d(
        x,
        (1, k),
        (1, s),
        (0, _single(padding, "padding", 0)),
        (1, _single(dilation, "dilation", 1)),
        ceil_mode,
        return_indices,
    )
    if return_indices:  # a flat index into 1 x L is the index into L
        return _as_1d(out[0], batched), _as_1d(out[1], batched)
    return _as_1d(out, batched)


def avg_pool1d(
    input, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad=True
):
    """Mean over each window of (N, C, L), zero padding counted when count_include_pad."""
    x, batched = _as_2d("avg_pool1d", input)
    k = _single(kernel_size, "kernel_size", 1)
    s = k if stride is None or stride == [] else _single(stride, "stride", 1)
    y = avg_pool2d(
        x, (1, k), (1, s), (0, _single(padding, "padding", 0)), ceil_mode, count_include_pad
    )
    return _as_1d(y, batched)


def _adaptive_windows(n: int, out: int):
    """PyTorch's adaptive windows [floor(i n / out), ceil((i + 1) n / out)) as (out, kmax)
    source indices (clamped) and a mask of the ones inside each window."""
    i = numpy.arange(out)
    start = (i * n) // out
    end = -((-(i + 1) * n) // out)
    k = int((end - start).max())
    idx = start[:, None] + numpy.arange(k)[None, :]
    return numpy.minimum(idx, n - 1), idx < end[:, None]


@on_device
def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """Max over PyTorch's adaptive windows of (N, C, H, W) (or (C, H, W)); with
    `return_indices` also the int64 flat index into H*W of each maximum."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_max_pool2d: expected a 3-D or 4-D input, got {input.shape}")
    if input.ndim == 3:
        out = adaptive_max_pool2d(unsqueeze(input, 0), output_size, return_indices)
        return tuple(squeeze(o, 0) for o in out) if return_indices else squeeze(out, 0)
    H, W = input.shape[2:]
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    oh, ow = (n if o is None else int(o) for o, n in zip(sizes, (H, W)))
    if min(oh, ow) < 1 or min(H, W) < 1:
        raise RuntimeError(f"adaptive_max_pool2d: output size {(oh, ow)} for input {input.shape}")
    (rh, mh), (rw, mw) = _adaptive_windows(H, oh), _adaptive_windows(W, ow)
    xp, dev = input.xp, input.device
    kh, kw = rh.shape[1], rw.shape[1]
    # (N, C, oh, kh, ow, kw) windows, cells outside a window set to -inf, then one max
    win = getitem(input, (slice(None), slice(None), xp.asarray(rh)[:, :, None, None],
                          xp.asarray(rw)[None, None]))  # fmt: skip
    inside = xp.asarray(mh[:, :, None, None] & mw[None, None])
    win = where(input._new(inside, dev), win, float("-inf"))
    win = reshape(win.permute(0, 1, 2, 4, 3, 5), (*input.shape[:2], oh, ow, kh * kw))
    values, arg = win.max(-1)
    if not return_indices:
        return values
    a = arg.array
    rows = xp.asarray(rh)[xp.arange(oh)[:, None], a // kw]
    cols = xp.asarray(rw)[xp.arange(ow)[None, :], a % kw]
    return values, input._new((rows * W + cols).astype(numpy.int64), dev)


@on_device
@_autocast_op("max_unpool2d")
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool2d: each value goes to its flat index into the output's H*W,
    zeros elsewhere (differentiable in `input`)."""
    if input.ndim not in (3, 4) or indices.shape != input.shape:
        raise RuntimeError(
            f"max_unpool2d: expected a 3-D or 4-D input and indices of its shape, got "
            f"{input.shape} and {indices.shape}"
        )
    if input.ndim == 3:
        return squeeze(
            max_unpool2d(
                unsqueeze(input, 0),
                unsqueeze(indices, 0),
                kernel_size,
                stride,
                padding,
                output_size,
            ),  # fmt: skip
            0,
        )

    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    N, C, h, w = input.shape
    if output_size is None:  # the input size of the max_pool2d that gave `indices`
        out = tuple(map(transposed_size, (h, w), k, s, p, (1, 1)))
    else:
        out = tuple(int(o) for o in tuple(output_size)[-2:])
    zeros = input._new(input.xp.zeros((N, C, math.prod(out)), input.dtype), input.device)
    flat = scatter(zeros, 2, reshape(indices, (N, C, -1)), reshape(input, (N, C, -1)))
    return reshape(flat, (N, C) + out)


# 3-D: the 2-D kernels over the depth windows ---------------------------------------------------
def _as_5d(name: str, input: TensorBase):
    if input.ndim not in (4, 5):
        raise RuntimeError(
            f"{name}: expected a 4-D (C, D, H, W) or 5-D (N, C, D, H, W) input, got {input.shape}"
        )
    return (input, True) if input.ndim == 5 else (unsqueeze(input, 0), False)


def _depth_windows(x: TensorBase, od: int, kd: int, sd: int, dd: int, fill: float):
    """(N, C, OD, KD, H, W): the input depths of each output depth's window (x already padded
    in depth); windows reaching past the end (ceil mode) read `fill` there."""
    D = x.shape[2]
    idx = numpy.arange(od)[:, None] * sd + numpy.arange(kd)[None, :] * dd
    inside = idx < D
    win = getitem(x, (slice(None), slice(None), x.xp.asarray(numpy.minimum(idx, D - 1))))
    if inside.all():
        return win
    mask = x._new(x.xp.asarray(inside[:, :, None, None]), x.device)
    return where(mask, win, fill)


@_autocast_op("conv3d")
@on_device
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """3-D cross-correlation of (N, C, D, H, W) with weight (C_out, C/groups, kd, kh, kw):
    one conv2d over the depth windows folded into batch (output depths) and channels."""
    x, batched = _as_5d("conv3d", input)
    if isinstance(padding, str):
        raise NotImplementedError("conv3d: string padding ('same', 'valid') is not supported")
    s, p, d, (od, _, _) = geometry.conv3d(x.shape, weight.shape, stride, padding, dilation, groups)
    (sd, sh, sw), (pd, ph, pw), (dd, dh, dw) = s, p, d
    N, C, D, H, W = x.shape
    Co, Cg, kd, kh, kw = weight.shape
    if pd:
        x = pad(x, (0, 0, 0, 0, pd, pd))
    win = _depth_windows(x, od, kd, sd, dd, 0.0)  # (N, C, OD, KD, H, W)
    cols = reshape(permute(win, 0, 2, 1, 3, 4, 5), (N * od, C * kd, H, W))
    w2 = reshape(weight, (Co, Cg * kd, kh, kw))  # channel c*KD + k, grouped as the input's
    y = conv2d(cols, w2, bias, (sh, sw), (ph, pw), (dh, dw), groups)  # (N*OD, Co, OH, OW)
    y = permute(reshape(y, (N, od) + y.shape[1:]), 0, 2, 1, 3, 4)
    return y if batched else squeeze(y, 0)


@_autocast_op("conv_transpose3d")
@on_device
def conv_transpose3d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1
):
    """Transposed 3-D convolution of (N, C, D, H, W) with weight (C, C_out/groups, kd, kh, kw):
    conv_transpose2d of every input depth, then each kernel depth added at its output depth."""
    x, batched = _as_5d("conv_transpose3d", input)
    s, p, op, d, (od, _, _) = geometry.conv_transpose3d(
        x.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    (sd, sh, sw), (pd, ph, pw), (dd, dh, dw), (opd, oph, opw) = s, p, d, op
    N, C, D, H, W = x.shape
    Ci, Cog, kd, kh, kw = weight.shape
    planes = reshape(permute(x, 0, 2, 1, 3, 4), (N * D, C, H, W))
    w2 = reshape(weight, (Ci, Cog * kd, kh, kw))  # output channel co*KD + k within its group
    y = conv_transpose2d(planes, w2, None, (sh, sw), (ph, pw), (oph, opw), groups, (dh, dw))
    OH, OW = y.shape[2:]
    Co = Cog * groups
    # (N, D, Co, KD, OH, OW) -> (N, Co, D*KD, OH, OW), then depth d*sd + k*dd gets each slice
    y = reshape(y, (N, D, Co, kd, OH, OW))
    y = reshape(permute(y, 0, 2, 1, 3, 4, 5), (N, Co, D * kd, OH, OW))
    full = transposed_size(D, kd, sd, 0, dd, opd)  # the output depth before the padding is cut
    target = (numpy.arange(D)[:, None] * sd + numpy.arange(kd)[None, :] * dd).reshape(-1)
    xp = x.xp
    idx = xp.broadcast_to(xp.asarray(target)[None, None, :, None, None], y.shape)
    zeros = x._new(xp.zeros((N, Co, full, OH, OW), y.dtype), x.device)
    out = scatter_add(zeros, 2, x._new(xp.ascontiguousarray(idx), x.device), y)
    out = getitem(out, (slice(None), slice(None), slice(pd, pd + od)))
    if bias is not None:
        out = out + reshape(bias, (1, Co, 1, 1, 1))
    return out if batched else squeeze(out, 0)


@on_device
@_autocast_op("max_pool3d")
def max_pool3d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each (dilated) window of (N, C, D, H, W): max_pool2d of every window depth, then
    the max over the window's depths; with `return_indices` the flat index into D*H*W."""
    x, batched = _as_5d("max_pool3d", input)
    k, s, p, d, (od, _, _) = geometry.pool3d(
        x.shape, kernel_size, stride, padding, dilation, ceil_mode
    )
    (kd, kh, kw), (sd, sh, sw), (pd, ph, pw), (dd, dh, dw) = k, s, p, d
    N, C, D, H, W = x.shape
    xpad = pad(x, (0, 0, 0, 0, pd, pd), value=float("-inf")) if pd else x
    win = _depth_windows(xpad, od, kd, sd, dd, float("-inf"))  # (N, C, OD, KD, H, W)
    planes = reshape(win, (N, C * od * kd, H, W))
    out = max_pool2d(planes, (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode, return_indices)
    y, hw = out if return_indices else (out, None)
    OH, OW = y.shape[2:]
    y = reshape(y, (N, C, od, kd, OH, OW))
    values, k = y.max(3)
    if not return_indices:
        return values if batched else squeeze(values, 0)
    xp = x.xp
    hw = reshape(hw, (N, C, od, kd, OH, OW)).array
    k = k.array
    pos = xp.take_along_axis(hw, k[:, :, :, None], axis=3)[:, :, :, 0]
    depth = xp.arange(od)[None, None, :, None, None] * sd + k * dd - pd
    idx = values._new((depth * H * W + pos).astype(numpy.int64), x.device)
    return (values, idx) if batched else (squeeze(values, 0), squeeze(idx, 0))


@on_device
@_autocast_op("avg_pool3d")
def avg_pool3d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override=None,
):
    """Mean over each window of (N, C, D, H, W): the window sums of avg_pool2d over every
    window depth, summed over the depths and divided by PyTorch's divisor (a product over the
    three dimensions, so it separates)."""
    x, batched = _as_5d("avg_pool3d", input)
    (kd, kh, kw), (sd, sh, sw), (pd, ph, pw), _, (od, _, _) = geometry.pool3d(
        x.shape, kernel_size, stride, padding, 1, ceil_mode, name="avg_pool3d"
    )
    N, C, D, H, W = x.shape
    xpad = pad(x, (0, 0, 0, 0, pd, pd)) if pd else x
    win = _depth_windows(xpad, od, kd, sd, 1, 0.0)
    planes = reshape(win, (N, C * od * kd, H, W))
    if divisor_override is not None:
        sums = avg_pool2d(planes, (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad, 1)
        sums = sum(reshape(sums, (N, C, od, kd) + sums.shape[2:]), 3)
        out = sums * (1.0 / divisor_override)
        return out if batched else squeeze(out, 0)
    means = avg_pool2d(planes, (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad)
    sums = sum(reshape(means, (N, C, od, kd) + means.shape[2:]), 3)
    length = window_lengths(od, D, kd, sd, pd, count_include_pad)  # the divisor's depth factor
    scale = x._new(x.xp.asarray((1.0 / length).astype(x.dtype))[:, None, None], x.device)
    out = sums * scale
    return out if batched else squeeze(out, 0)
