"""Reductions: sum, mean, var, std, max, min, prod, argmax, logsumexp."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy

from ..autocast_mode import autocast_op as _autocast_op
from ..autocast_mode import native_op as _native_op
from ..autograd import Function, is_grad_enabled
from ..device import on_device
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase
from .math import exp, log, maximum, minimum, sqrt
from .shape import _norm_dim, broadcast_to, reshape

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _axes(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(sorted({_norm_dim(d, ndim) for d in dims}))
    return axes if ndim else ()  # a 0-d tensor's dim 0 or -1 reduces nothing


def _keep_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _count(shape, axes) -> int:
    """How many elements each output of a reduction over `axes` reduces."""
    return int(numpy.prod([shape[a] for a in axes], dtype=numpy.int64))


class Sum(Function):
    saves_inputs = False

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        if self.axes is None:
            gy = reshape(gy, (1,) * len(self.in_shape))
        elif not self.keepdim:
            gy = reshape(gy, _keep_shape(self.in_shape, self.axes))
        return broadcast_to(gy, self.in_shape)


@_autocast_op("sum")
def sum(x: TensorBase, dim=None, keepdim: bool = False, dtype=None) -> TensorBase:
    if dtype is not None:
        x = x.to(dtype)
    elif _kind(x.array.dtype) in "biu" and x.array.dtype != numpy.int64:
        x = x.to(numpy.int64)
    if dim is None and not keepdim:
        return Sum(None, False)(x)
    return Sum(_axes(dim, x.ndim), keepdim)(x)


@_native_op
def mean(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    if _kind(x.dtype) not in "fc":
        raise RuntimeError(
            f"mean(): could not infer output dtype; input dtype is {x.dtype}, "
            "use a floating point tensor"
        )
    axes = _axes(dim, x.ndim)
    n = _count(x.shape, axes)
    return sum(x, axes, keepdim) * (1.0 / n if n else float("nan"))


class Var(Function):
    """Variance over `axes` divided by max(0, n - correction), as PyTorch: inf (NaN where all
    deviations are 0) once the correction reaches n. The gradient is 2 (x - mean) / (n - c)
    written directly (not through the mean, whose contribution sums to 0), so it stays +-inf
    rather than inf - inf at that edge, as PyTorch's."""

    def __init__(self, axes, keepdim, correction):
        self.axes, self.keepdim, self.correction = axes, keepdim, correction

    def forward(self, x):
        n = _count(x.shape, self.axes)
        self.scale = 1.0 / (n - self.correction) if n > self.correction else math.inf
        d = x - x.mean(axis=self.axes, keepdims=True)
        d *= d
        return d.sum(axis=self.axes, keepdims=self.keepdim) * x.dtype.type(self.scale)

    def backward(self, gy):
        x = self.inputs[0]
        if not self.keepdim:
            gy = reshape(gy, _keep_shape(x.shape, self.axes))
        return gy * (x - mean(x, self.axes, keepdim=True)) * (2.0 * self.scale)


@_native_op
def var(
    x: TensorBase,
    dim=None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    correction: int | None = None,
) -> TensorBase:
    """Variance with Bessel's correction by default (PyTorch's `correction=1`)."""
    if correction is None:
        correction = 1 if unbiased in (None, True) else 0
    if _kind(x.dtype) not in "fc":
        raise RuntimeError(f"var(): expected a floating point tensor, got {x.dtype}")
    return Var(_axes(dim, x.ndim), keepdim, correction)(x)


@_native_op
def std(
    x: TensorBase,
    dim=None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    correction: int | None = None,
) -> TensorBase:
    return sqrt(var(x, dim, unbiased, keepdim, correction))


class _Extremum(Function):
    """max/min over axes; the gradient goes to the selected element(s)."""

    saves_inputs = False
    pick = "max"

    def __init__(self, axis, keepdim):
        self.axis, self.keepdim = axis, keepdim

    def forward(self, x):
        xp = self.xp
        self.in_shape = x.shape
        if self.axis is None:
            y = x.max() if self.pick == "max" else x.min()
            # Ties share the gradient evenly (PyTorch's rule for full reductions).
            mask = x == y
            self.mask = mask / mask.sum()
            return y
        arg = x.argmax(axis=self.axis) if self.pick == "max" else x.argmin(axis=self.axis)
        self.indices = arg
        a = xp.expand_dims(arg, self.axis)
        y = xp.take_along_axis(x, a, axis=self.axis)
        shape = [1] * x.ndim
        shape[self.axis] = x.shape[self.axis]
        self.mask = xp.arange(x.shape[self.axis]).reshape(shape) == a
        return y if self.keepdim else y.squeeze(self.axis)

    def backward(self, gy):
        if self.axis is not None and not self.keepdim:
            gy = reshape(gy, _keep_shape(self.in_shape, (self.axis,)))
        elif self.axis is None:
            gy = reshape(gy, (1,) * len(self.in_shape))
        return broadcast_to(gy, self.in_shape) * gy._new(self.mask.astype(gy.dtype), gy.device)


class Max(_Extremum):
    pick = "max"


class Min(_Extremum):
    pick = "min"


@on_device
def _extremum(cls, x, dim, keepdim, other):
    if isinstance(dim, TensorBase) or isinstance(other, TensorBase):
        return (maximum if cls is Max else minimum)(x, other if other is not None else dim)
    if isinstance(dim, (tuple, list)):  # several dims: values only, as amax/amin
        return (amax if cls is Max else amin)(x, dim, keepdim)
    if x.array.size == 0:
        raise RuntimeError(f"{cls.pick}(): expected a non-empty tensor, got shape {x.shape}")
    if dim is None:
        return cls(None, False)(x)
    if x.ndim == 0:  # dim 0 or -1 of a 0-d tensor: the value itself at index 0
        _norm_dim(dim, 0)
        zero = x._new(x.xp.zeros((), numpy.int64), x.device)
        return ValuesIndices(cls(None, False)(x), zero)
    fn = cls(_norm_dim(dim, x.ndim), keepdim)
    values = fn(x)
    idx = fn.indices if keepdim is False else fn.xp.expand_dims(fn.indices, fn.axis)
    return ValuesIndices(values, x._new(idx.astype(numpy.int64), x.device))


def max(x: TensorBase, dim=None, keepdim: bool = False, other=None):
    """`x.max()` -> the maximum; `x.max(dim)` -> (values, indices); `max(x, other)` elementwise."""
    return _extremum(Max, x, dim, keepdim, other)


def min(x: TensorBase, dim=None, keepdim: bool = False, other=None):
    return _extremum(Min, x, dim, keepdim, other)


def amax(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    if dim is None:
        r = max(x)
        return reshape(r, (1,) * x.ndim) if keepdim else r
    if isinstance(dim, int):
        return max(x, dim, keepdim).values
    for d in sorted(_axes(dim, x.ndim), reverse=True):
        x = max(x, d, keepdim).values
    return x


def amin(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    return -amax(-x, dim, keepdim)


@on_device
def _arg(pick, x: TensorBase, dim, keepdim: bool) -> TensorBase:
    """argmax/argmin (`pick` is the array method's name): int64 indices, no gradient."""
    if dim is None or x.ndim == 0:
        if dim is not None:
            _norm_dim(dim, 0)
        a = getattr(x.array, pick)()
    else:
        axis = _norm_dim(dim, x.ndim)
        a = getattr(x.array, pick)(axis=axis)
        if keepdim:
            a = x.xp.expand_dims(a, axis)
    return x._new(x.xp.asarray(a, dtype=numpy.int64), x.device)


def argmax(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    return _arg("argmax", x, dim, keepdim)


def argmin(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    return _arg("argmin", x, dim, keepdim)


class Prod(Function):
    def __init__(self, axis, keepdim):
        self.axis, self.keepdim = axis, keepdim

    def forward(self, x):
        return x.prod(axis=self.axis, keepdims=self.keepdim)

    def backward(self, gy):
        # d prod / d x_i = product of the others = prod / x_i, written in engine ops (so it is
        # differentiable again) unless an x_i is 0; then exclusive cumulative products give it.
        x = self.inputs[0]
        keep = (1,) * x.ndim if self.axis is None else _keep_shape(x.shape, (self.axis,))
        gy = broadcast_to(reshape(gy, keep), x.shape)
        if bool((x.array != 0).all()):
            return gy * broadcast_to(reshape(self.output(), keep), x.shape) / x
        if is_grad_enabled():
            raise RuntimeError(
                "prod: double backward (create_graph=True) at an input containing zeros is not "
                "supported"
            )
        return gy * x._new(self._others(x.array), x.device)

    def _others(self, a):
        """Product of all other elements along the axis, without dividing (zeros allowed)."""
        xp = self.xp
        flat = a.reshape(-1) if self.axis is None else a
        ax = 0 if self.axis is None else self.axis
        left = _exclusive_cumprod(xp, flat, ax)
        right = xp.flip(_exclusive_cumprod(xp, xp.flip(flat, ax), ax), ax)
        return (left * right).reshape(a.shape)


def _exclusive_cumprod(xp, a, ax):
    """[1, a0, a0 a1, ...] along `ax`."""
    out = xp.ones_like(a)
    if a.shape[ax] > 1:
        src, dst = [slice(None)] * a.ndim, [slice(None)] * a.ndim
        src[ax], dst[ax] = slice(None, -1), slice(1, None)
        out[tuple(dst)] = xp.cumprod(a, axis=ax)[tuple(src)]
    return out


@_autocast_op("prod")
def prod(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    """Product of elements, over all of them, one dim or a tuple of dims."""
    if _kind(x.dtype) in "biu" and x.dtype != numpy.int64:  # integers multiply in int64 (PyTorch)
        x = x.to(numpy.int64)
    if isinstance(dim, (tuple, list)):
        for d in sorted(_axes(dim, x.ndim), reverse=True):
            x = Prod(d, keepdim)(x)
        return x
    axis = None if dim is None else _norm_dim(dim, x.ndim)
    return Prod(axis if x.ndim else None, keepdim)(x)


@_autocast_op("logsumexp")
@on_device
def logsumexp(x: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:
    """log(sum(exp(x))) with the max shifted out, stable for large |x|."""
    axes = _axes(dim, x.ndim)
    if x.array.size:
        m = x.array.max(axis=axes, keepdims=True)
    else:
        m = x.xp.zeros(_keep_shape(x.shape, axes), x.dtype)
    m = x.xp.where(x.xp.isfinite(m), m, 0)
    mt = x._new(m, x.device)
    out = log(sum(exp(x - mt), axes, keepdim=True)) + mt
    return (
        out if keepdim else reshape(out, tuple(s for i, s in enumerate(out.shape) if i not in axes))
    )


@on_device
def _logical_reduce(pick, x: TensorBase, dim, keepdim: bool) -> TensorBase:
    """any/all (`pick`): a bool tensor, no gradient."""
    a = x.array
    axes = None if dim is None or x.ndim == 0 else _axes(dim, x.ndim)
    out = getattr(a.astype(bool, copy=False), pick)(axis=axes, keepdims=keepdim and x.ndim > 0)
    return x._new(x.xp.asarray(out), x.device)


def any(input: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:  # noqa: A001
    """True where any element over `dim` (all of them by default) is non-zero."""
    return _logical_reduce("any", input, dim, keepdim)


def all(input: TensorBase, dim=None, keepdim: bool = False) -> TensorBase:  # noqa: A001
    """True where every element over `dim` (all of them by default) is non-zero."""
    return _logical_reduce("all", input, dim, keepdim)


@_native_op
def var_mean(input: TensorBase, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
             correction: int | None = None):  # fmt: skip
    """(var, mean) over `dim` in one call, as torch.var_mean."""
    return var(input, dim, unbiased, keepdim, correction), mean(input, dim, keepdim)


@_native_op
def std_mean(input: TensorBase, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
             correction: int | None = None):  # fmt: skip
    """(std, mean) over `dim` in one call, as torch.std_mean."""
    return std(input, dim, unbiased, keepdim, correction), mean(input, dim, keepdim)


@on_device
def count_nonzero(input: TensorBase, dim=None) -> TensorBase:
    """How many elements over `dim` (an int or a tuple; all by default) are non-zero (int64)."""
    axes = None if dim is None or input.ndim == 0 else _axes(dim, input.ndim)
    n = (input.array != 0).sum(axis=axes)
    return input._new(input.xp.asarray(n, dtype=numpy.int64), input.device)


__all__ = [
    "sum",
    "mean",
    "var",
    "std",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "prod",
    "logsumexp",
    "any",
    "all",
    "var_mean",
    "std_mean",
    "count_nonzero",
]
