"""Scans along a dimension: cumsum, cumprod, cummax, cummin, logcumsumexp.

cummax, cummin and logcumsumexp run as log2(n) whole-array steps (Hillis-Steele), the same code
on NumPy and CuPy (CuPy's ufuncs have no `accumulate` beyond add and multiply).
"""

from __future__ import annotations

import numpy

from ..autocast_mode import autocast_op as _autocast_op
from ..autograd import Function, is_grad_enabled
from ..device import on_device
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase
from .math import exp, log, where
from .reduction import ValuesIndices
from .shape import _norm_dim, flip


def _dim(x: TensorBase, dim: int) -> int:
    return _norm_dim(dim, x.ndim)


def _scan(xp, op, a, axis: int):
    """Inclusive scan of the binary ufunc `op` along `axis` in log2(n) whole-array steps."""
    a = a.copy()
    n, step = a.shape[axis], 1
    hi, lo = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    while step < n:
        hi[axis], lo[axis] = slice(step, None), slice(None, n - step)
        a[tuple(hi)] = op(a[tuple(hi)], a[tuple(lo)])  # the right side is a new array
        step *= 2
    return a


def _reverse_cumsum(g: TensorBase, axis: int) -> TensorBase:
    """sum_{j >= i} g_j along `axis` (the adjoint of cumsum), in engine ops."""
    return flip(cumsum(flip(g, axis), axis), axis)


class Cumsum(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return self.xp.cumsum(x, axis=self.axis)

    def backward(self, gy):
        return _reverse_cumsum(gy, self.axis)


def _scan_input(input: TensorBase, dtype) -> TensorBase:
    """The input a running sum or product works on: in ``dtype`` when given, else integers and
    bools in int64 (PyTorch's rule for cumsum and cumprod)."""
    if dtype is not None:
        return input.to(dtype)
    if _kind(input.dtype) in "iub" and input.dtype != numpy.int64:
        return input.to(numpy.int64)
    return input


@_autocast_op("cumsum")
def cumsum(input: TensorBase, dim: int, *, dtype=None) -> TensorBase:
    """Running sums along `dim` (integers and bools sum in int64, as in PyTorch)."""
    input = _scan_input(input, dtype)
    if input.ndim == 0:
        return input
    return Cumsum(_dim(input, dim))(input)


class Cumprod(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return self.xp.cumprod(x, axis=self.axis)

    def backward(self, gy):
        # dy_j/dx_i = y_j / x_i for j >= i where no x is 0. Past the first zero z of a row every
        # y_j is 0, so the same formula (with x_i replaced by 1 where it is 0) gives the right 0
        # for i > z and the right value for i < z; at i = z the derivative is
        # sum_{j >= z} gy_j prod_{k <= j, k != z} x_k, the cumprod with x_z replaced by 1.
        x, y, ax = self.inputs[0], self.output(), self.axis
        xp, xa = self.xp, self.inputs[0].array
        is_zero = xa == 0
        safe = where(x._new(is_zero, x.device), 1.0, x)
        g = _reverse_cumsum(gy * y, ax) / safe
        first = is_zero & (xp.cumsum(is_zero, axis=ax) == 1)
        if is_grad_enabled() and bool(is_zero.any()):  # double backward: a sync, only then
            raise RuntimeError(
                "cumprod: double backward (create_graph=True) at an input containing zeros is "
                "not supported"
            )
        ones_at_z = xp.where(first, 1, xa)
        terms = gy.array * xp.cumprod(ones_at_z, axis=ax)
        at_z = xp.flip(xp.cumsum(xp.flip(terms, ax), axis=ax), ax)  # sum over j >= z
        return where(x._new(first, x.device), x._new(at_z, x.device), g)


@_autocast_op("cumprod")
def cumprod(input: TensorBase, dim: int, *, dtype=None) -> TensorBase:
    """Running products along `dim` (integers and bools multiply in int64, as in PyTorch)."""
    input = _scan_input(input, dtype)
    if input.ndim == 0:
        return input
    return Cumprod(_dim(input, dim))(input)


@on_device
def _cum_extremum(pick: str, input: TensorBase, dim: int):
    """(values, indices) of the running max/min; ties and NaN take the latest index, as
    PyTorch; the gradient of each value goes to the element it came from."""
    if input.ndim == 0:
        return ValuesIndices(input, input._new(input.xp.zeros((), numpy.int64), input.device))
    d, xp, a = _dim(input, dim), input.xp, input.array
    running = _scan(xp, getattr(xp, pick), a, d)
    shape = [1] * a.ndim
    shape[d] = a.shape[d]
    pos = xp.arange(a.shape[d], dtype=numpy.int64).reshape(shape)
    hit = (a == running) | (xp.isnan(a) if _kind(a.dtype) == "f" else False)
    idx = _scan(xp, xp.maximum, xp.where(hit, pos, 0), d)
    indices = input._new(idx, input.device)
    return ValuesIndices(input.gather(d, indices), indices)


def cummax(input: TensorBase, dim: int):
    return _cum_extremum("maximum", input, dim)


def cummin(input: TensorBase, dim: int):
    return _cum_extremum("minimum", input, dim)


class LogCumSumExp(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return _scan(self.xp, self.xp.logaddexp, x, self.axis)

    def backward(self, gy):
        # grad_i = sum_{j >= i} gy_j exp(x_i - y_j), split by the sign of gy and summed in the
        # log domain (a reversed logcumsumexp) so that nothing overflows.
        x, y, ax = self.inputs[0], self.output(), self.axis
        # where y_j is -inf every x_i <= y_j is too and the term is 0; keep -inf - -inf out
        y = where(y._new(y.xp.isneginf(y.array), y.device), 0.0, y)
        out = None
        for sign in (1.0, -1.0):
            part = gy * sign
            pos = gy._new(part.array > 0, gy.device)
            log_part = where(pos, log(where(pos, part, 1.0)), float("-inf"))
            s = flip(logcumsumexp(flip(log_part - y, ax), ax), ax)
            term = exp(s + x) * sign
            out = term if out is None else out + term
        return out


def logcumsumexp(input: TensorBase, dim: int) -> TensorBase:
    """log(cumsum(exp(input))) along `dim`, without overflow."""
    if _kind(input.dtype) not in "f":
        raise RuntimeError(f"logcumsumexp(): expected a floating-point tensor, got {input.dtype}")
    if input.ndim == 0:
        return input
    return LogCumSumExp(_dim(input, dim))(input)


__all__ = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]
