"""Convolution and pooling ops built on the 2-D ones: the 1-D forms run the 2-D kernels on a
size-1 height (one code path, as the issue asks); adaptive max-pooling is a gather over padded
windows and max-unpooling a scatter, so both are differentiable through existing ops.
"""

from __future__ import annotations

import math

import numpy

from ..tensorbase import TensorBase
from .conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d
from .indexing import scatter
from .math import where
from .shape import getitem, reshape, squeeze, unsqueeze

__all__ = [
    "conv1d",
    "conv_transpose1d",
    "max_pool1d",
    "avg_pool1d",
    "adaptive_max_pool2d",
    "max_unpool2d",
]


def _single(value, name: str) -> int:
    """An int, or a 1-tuple of one (PyTorch's `_single`)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-tuple for a 1-D op, got {value}")
        value = value[0]
    return int(value)


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


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D cross-correlation of (N, C, L) with weight (C_out, C/groups, k); `padding` may be
    an int or "valid" / "same"."""
    x, batched = _as_2d("conv1d", input, weight)
    pad = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
    y = conv2d(
        x,
        unsqueeze(weight, 2),
        bias,
        (1, _single(stride, "stride")),
        pad,
        (1, _single(dilation, "dilation")),
        groups,
    )
    return _as_1d(y, batched)


def conv_transpose1d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1
):
    """Transposed 1-D convolution of (N, C, L) with weight (C, C_out/groups, k)."""
    x, batched = _as_2d("conv_transpose1d", input, weight)
    y = conv_transpose2d(
        x,
        unsqueeze(weight, 2),
        bias,
        (1, _single(stride, "stride")),
        (0, _single(padding, "padding")),
        (0, _single(output_padding, "output_padding")),
        groups,
        (1, _single(dilation, "dilation")),
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
    k = _single(kernel_size, "kernel_size")
    s = k if stride is None or stride == [] else _single(stride, "stride")
    out = max_pool2d(
        x,
        (1, k),
        (1, s),
        (0, _single(padding, "padding")),
        (1, _single(dilation, "dilation")),
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
    k = _single(kernel_size, "kernel_size")
    s = k if stride is None or stride == [] else _single(stride, "stride")
    y = avg_pool2d(
        x, (1, k), (1, s), (0, _single(padding, "padding")), ceil_mode, count_include_pad
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

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    k = pair(kernel_size)
    s = k if stride is None else pair(stride)
    p = pair(padding)
    N, C, h, w = input.shape
    if output_size is None:
        out = tuple((n - 1) * s_ - 2 * p_ + k_ for n, s_, p_, k_ in zip((h, w), s, p, k))
    else:
        out = tuple(int(o) for o in tuple(output_size)[-2:])
    zeros = input._new(input.xp.zeros((N, C, math.prod(out)), input.dtype), input.device)
    flat = scatter(zeros, 2, reshape(indices, (N, C, -1)), reshape(input, (N, C, -1)))
    return reshape(flat, (N, C) + out)
