"""Elementwise ops: arithmetic with broadcasting, unary math, activations' building blocks."""

from __future__ import annotations

import math
import numbers

import numpy

from kernels import activation_gpu as _activation_gpu
from kernels import parallel as _parallel

from ..autocast_mode import autocast_op as _autocast_op
from ..autograd import Function
from ..device import check_later, on_device
from ..dtypes import kind as _kind
from ..grad_mode import is_grad_enabled
from ..tensorbase import TensorBase, default_dtype, floating, result_type
from .shape import sum_to


def _const(x: TensorBase, array) -> TensorBase:
    """A tensor outside the graph on x's device (masks and other constants of a backward)."""
    return x._new(array, x.device)


# Binary ------------------------------------------------------------------------------------
class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, a.shape) if a.requires_grad else None
        gb = sum_to(gy * a, b.shape) if b.requires_grad else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        gb = None
        if b.requires_grad:
            gb = sum_to(-gy * a / (b * b), b.shape)
        ga = sum_to(gy / b, a.shape) if a.requires_grad else None
        return ga, gb


class PowScalar(Function):
    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, x):
        return x**self.exponent

    def backward(self, gy):
        (x,) = self.inputs
        c = self.exponent
        if c == 0:  # d/dx x**0 is 0 everywhere, also at x = 0 (where x**-1 is inf)
            return gy * 0.0
        if c == 2:
            return gy * x * 2.0
        return gy * c * x ** (c - 1)


class Pow(Function):
    def forward(self, a, b):
        y = a**b
        return y if y.dtype == a.dtype else y.astype(a.dtype)  # NumPy's bool ** bool is int8

    def backward(self, gy):
        # PyTorch's edge cases: d/da is 0 where b == 0 (also at a == 0); d/db is 0 where
        # a == 0 and b >= 0, else y log(a): -inf at a == 0, b < 0, and NaN for a < 0.
        a, b = self.inputs
        zero = _const(gy, gy.xp.zeros((), gy.dtype))
        ga = gb = None
        if a.requires_grad:
            ga = sum_to(where(_const(b, b.array == 0), zero, gy * b * a ** (b - 1)), a.shape)
        if b.requires_grad:
            y = self.output()
            flat = _const(a, (a.array == 0) & (b.array >= 0))
            gb = sum_to(where(flat, zero, gy * y * log(a)), b.shape)
        return ga, gb


@on_device
def _binary_operands(a, b):
    """Both operands as tensors of the dtype PyTorch computes them in (`result_type`: 0-d
    tensors and Python numbers are weak), on the tensor operand's device."""
    # The common cases first, without the promotion rules: one dtype, or a float tensor with
    # a Python number (which takes the tensor's dtype).
    if isinstance(a, TensorBase):
        if isinstance(b, TensorBase):
            if a.array.dtype == b.array.dtype:
                return a, b
        elif type(b) in (int, float) and _kind(a.dtype) == "f":
            return a, a._new(a.xp.asarray(b, dtype=a.dtype), a.device)
    elif type(a) in (int, float) and isinstance(b, TensorBase) and _kind(b.dtype) == "f":
        return b._new(b.xp.asarray(a, dtype=b.dtype), b.device), b
    ref = a if isinstance(a, TensorBase) else b
    if not isinstance(a, (TensorBase, numbers.Number)):
        a = ref._operand(a)  # an array or a list: a tensor of its own dtype
    if not isinstance(b, (TensorBase, numbers.Number)):
        b = ref._operand(b)
    dt = result_type(a, b)
    return _in_dtype(a, dt, ref), _in_dtype(b, dt, ref)


@on_device
def _in_dtype(x, dtype, ref: TensorBase) -> TensorBase:
    if isinstance(x, TensorBase):
        return x if x.dtype == dtype else x.to(dtype)
    return ref._new(ref.xp.asarray(x, dtype=dtype), ref.device)  # a Python number


def add(a, b, alpha=1) -> TensorBase:
    a, b = _binary_operands(a, b)
    if alpha != 1:
        b = b * alpha
    return Add()(a, b)


def sub(a, b, alpha=1) -> TensorBase:
    a, b = _binary_operands(a, b)
    if alpha != 1:
        b = b * alpha
    return Sub()(a, b)


def mul(a, b) -> TensorBase:
    return Mul()(*_binary_operands(a, b))


class DivRounded(Function):
    """a / b rounded toward zero ("trunc") or down ("floor"), in the operands' dtype (integers
    stay integers); piecewise constant, so the gradient is zero, as in PyTorch."""

    saves_inputs = False

    def __init__(self, mode):
        self.mode = mode

    def forward(self, a, b):
        xp = self.xp
        self.shapes = (a.shape, b.shape)
        if _kind(a.dtype) in "fc":
            return (xp.floor if self.mode == "floor" else xp.trunc)(a / b)
        # On cuda read at the next host read (no sync per division).
        check_later((b == 0).any(), lambda: ZeroDivisionError("div: integer division by zero"))
        q = a // b
        if self.mode == "trunc":  # floor division rounds negative inexact quotients down
            q += ((q * b != a) & ((a < 0) != (b < 0))).astype(q.dtype)
        return q

    def backward(self, gy):
        zero = gy * 0.0
        return sum_to(zero, self.shapes[0]), sum_to(zero, self.shapes[1])


def div(a, b, rounding_mode: str | None = None) -> TensorBase:
    """a / b; integers divide in the default float32, unless `rounding_mode` ("trunc" or
    "floor") rounds the quotient, which then keeps the operands' promoted dtype."""
    a, b = _binary_operands(a, b)
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(
                f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
            )
        return DivRounded(rounding_mode)(a, b)
    if _kind(a.dtype) in "iub":
        a, b = a.to(floating(a.dtype)), b.to(floating(b.dtype))
    return Div()(a, b)


@_autocast_op("pow")
def pow(a, b) -> TensorBase:
    if isinstance(a, TensorBase) and isinstance(b, (int, float)) and not isinstance(b, bool):
        dtype = result_type(a, b)  # int ** 0.5 is float32, bool ** 2 int64, as PyTorch
        if a.dtype != dtype:
            a = a.to(dtype)
        if b == 1:
            return a
        return PowScalar(b)(a)
    return Pow()(*_binary_operands(a, b))


class _Pick(Function):
    """Elementwise maximum or minimum (`pick`); ties split the gradient evenly, as PyTorch does."""

    pick = "maximum"

    def forward(self, a, b):
        return getattr(self.xp, self.pick)(a, b)

    def backward(self, gy):
        a, b = self.inputs
        a_wins = a.array > b.array if self.pick == "maximum" else a.array < b.array
        mask_a = _const(a, (a_wins + 0.5 * (a.array == b.array)).astype(gy.dtype))
        return sum_to(gy * mask_a, a.shape), sum_to(gy * (1.0 - mask_a), b.shape)


class Maximum(_Pick):
    pick = "maximum"


class Minimum(_Pick):
    pick = "minimum"


def maximum(a, b) -> TensorBase:
    return Maximum()(*_binary_operands(a, b))


def minimum(a, b) -> TensorBase:
    return Minimum()(*_binary_operands(a, b))


class Where(Function):
    saves_inputs = False

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return self.xp.where(self.cond, a, b)

    def backward(self, gy):
        zero = _const(gy, gy.xp.zeros((), gy.dtype))
        c = _const(gy, self.cond)
        return (
            sum_to(where(c, gy, zero), self.shapes[0]),
            sum_to(where(c, zero, gy), self.shapes[1]),
        )


@on_device
def where(condition, a, b) -> TensorBase:
    """Elements of `a` where `condition` holds, else of `b` (differentiable in a and b)."""
    cond = condition.array if isinstance(condition, TensorBase) else condition
    if not isinstance(a, TensorBase) and not isinstance(b, TensorBase):  # where(c, 1.0, 0.0)
        if not isinstance(condition, TensorBase):
            raise TypeError("where(): condition must be a tensor when a and b are both scalars")
        a = condition._new(condition.xp.asarray(a, dtype=default_dtype(a)), condition.device)
    a, b = _binary_operands(a, b)
    shape = numpy.broadcast_shapes(numpy.shape(cond), a.shape, b.shape)
    if a.shape != shape:
        a = a.expand(*shape)
    return Where(cond)(a, b)


# Unary -------------------------------------------------------------------------------------
class Neg(Function):
    saves_inputs = False

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    saves_inputs = False

    def forward(self, x):
        return self.xp.exp(x)

    def backward(self, gy):
        return gy * self.output()


class Log(Function):
    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Sqrt(Function):
    saves_inputs = False

    def forward(self, x):
        return self.xp.sqrt(x)

    def backward(self, gy):
        return gy / (self.output() * 2.0)


class Abs(Function):
    def forward(self, x):
        return self.xp.abs(x)

    def backward(self, gy):
        x = self.inputs[0]
        return gy * _const(x, self.xp.sign(x.array))


class Sin(Function):
    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        return gy * cos(self.inputs[0])


class Cos(Function):
    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, gy):
        return -gy * sin(self.inputs[0])


class Tanh(Function):
    saves_inputs = False

    def forward(self, x):
        return self.xp.tanh(x)

    def backward(self, gy):
        y = self.output()
        if _one_kernel(self.xp, gy, y):
            from kernels import activation_gpu  # noqa: PLC0415 (CuPy only on cuda)

            return _const(gy, activation_gpu.tanh_backward(y.array, gy.array))
        return gy * (1.0 - y * y)


class Sigmoid(Function):
    saves_inputs = False

    def forward(self, x):
        xp = self.xp
        if _on_kernel(xp, x.dtype):
            from kernels import activation_gpu  # noqa: PLC0415 (CuPy only on cuda)

            return activation_gpu.sigmoid_forward(x)  # one kernel (three below)
        # 1 / (1 + exp(-x)): NumPy vectorises float32 exp but not tanh (0.28 vs 0.45 ms for
        # 100k floats). exp(-x) overflows to inf for very negative x, giving the limit 0.
        with numpy.errstate(over="ignore"):
            e = xp.exp(-x)
        e += 1
        return 1 / e

    def backward(self, gy):
        y = self.output()
        if _one_kernel(self.xp, gy, y):
            from kernels import activation_gpu  # noqa: PLC0415

            return _const(gy, activation_gpu.sigmoid_backward(y.array, gy.array))
        return gy * y * (1.0 - y)


class ReLU(Function):
    saves_inputs = False
    # The gradient a max-pool right after this ReLU already masked (engine.ops.conv.MaxPool2d's
    # fused backward), passed on as it is when it arrives unchanged: the one object, not a sum.
    premasked = None

    def forward(self, x):
        if _cut(self.xp, x):
            y = numpy.empty_like(x)
            _parallel.each_span(lambda s: numpy.maximum(x[s], 0, out=y[s]), len(x), x.nbytes)
            return y
        return self.xp.maximum(x, 0)

    def backward(self, gy):
        y = self.output()
        if self.premasked is not None:
            premasked, self.premasked = self.premasked, None
            if gy is premasked:
                return gy
        if _one_kernel(self.xp, gy, y):
            from kernels import activation_gpu  # noqa: PLC0415 (CuPy only on cuda)

            return _const(gy, activation_gpu.leaky_relu_backward(y.array, gy.array, 0.0))
        if not is_grad_enabled():  # gy times the boolean mask in one product, no cast of it
            g, ya = gy.array, y.array
            if _cut(self.xp, g) and g.shape == ya.shape:
                gx = numpy.empty_like(g)
                _parallel.each_span(
                    lambda s: numpy.multiply(g[s], ya[s] > 0, out=gx[s]), len(g), g.nbytes
                )
                return _const(gy, gx)
            return _const(gy, g * (ya > 0))
        return gy * _const(y, y.array > 0)


def _on_kernel(xp, dtype) -> bool:
    """Whether an activation of arrays of ``dtype`` runs as one kernel of
    kernels/cuda/activation.cu: on cuda, float16, bfloat16, float32 or float64 (the 16-bit
    ones computed in float32 and rounded once)."""
    return xp is not numpy and _activation_gpu.supports(dtype)


def _cut(xp, a) -> bool:
    """Whether an elementwise op's CPU passes over ``a`` are cut into one span of the leading
    axis per BLAS thread (kernels.parallel.each_span): NumPy float32/float64 arrays of at
    least EACH_SPAN_MIN_BYTES, more than one thread. Otherwise the op runs its NumPy calls on
    the whole arrays as before (no closure, no extra call for small arrays or one thread)."""
    return (
        xp is numpy
        and a.nbytes >= _parallel.EACH_SPAN_MIN_BYTES
        and a.ndim > 0
        and a.dtype in _CUT_DTYPES
        and _parallel.threads() > 1
    )


_CUT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _one_kernel(xp, gy: TensorBase, y: TensorBase) -> bool:
    """Whether an activation's backward runs as one CUDA kernel: on cuda, a dtype of
    :func:`_on_kernel`, not recorded (a recorded backward stays in engine ops, differentiable
    again)."""
    return gy.dtype == y.dtype and _on_kernel(xp, gy.dtype) and not is_grad_enabled()


class Clip(Function):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        # NumPy's clip of bfloat16 (ml_dtypes) between Python floats returns float32.
        return self.xp.clip(x, self.lo, self.hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        x = self.inputs[0].array
        mask = self.xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            mask &= x >= self.lo
        if self.hi is not None:
            mask &= x <= self.hi
        return gy * _const(gy, mask)


def _unary(cls, float_only: bool = False):
    """The op of Function `cls`; a `float_only` one computes integers in the default float32."""

    def op(x: TensorBase) -> TensorBase:
        if float_only and _kind(x.array.dtype) not in "fc":
            x = x.to(floating(x.dtype))
        return cls()(x)

    op.__name__ = cls.__name__.lower()
    op.__doc__ = f"Elementwise {cls.__name__.lower()}."
    return _autocast_op(op.__name__)(op)


neg = _unary(Neg)
exp = _unary(Exp, float_only=True)
log = _unary(Log, float_only=True)
sqrt = _unary(Sqrt, float_only=True)
abs = _unary(Abs)
sin = _unary(Sin, float_only=True)
cos = _unary(Cos, float_only=True)
tanh = _unary(Tanh, float_only=True)
sigmoid = _unary(Sigmoid, float_only=True)
relu = _unary(ReLU)


def clip(x: TensorBase, min=None, max=None) -> TensorBase:
    if min is None and max is None:
        raise ValueError("clip: at least one of min or max must be given")
    dtype = result_type(x, *(b for b in (min, max) if b is not None))
    if x.dtype != dtype:  # an integer tensor clamped at 0.5 is float32, as in PyTorch
        x = x.to(dtype)
    return Clip(min, max)(x)


clamp = clip


def square(x: TensorBase) -> TensorBase:
    if _kind(x.dtype) == "b":  # x ** 2 of bools is int64 in PyTorch
        x = x.to(numpy.int64)
    return x * x


@_autocast_op("rsqrt")
def rsqrt(x: TensorBase) -> TensorBase:
    return 1.0 / sqrt(x)


@_autocast_op("log1p")
def log1p(x: TensorBase) -> TensorBase:
    return Log1p()(_floating(x))


class Log1p(Function):
    def forward(self, x):
        return self.xp.log1p(x)

    def backward(self, gy):
        return gy / (self.inputs[0] + 1.0)


@on_device
def sign(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.sign(x.array))


def erf(x: TensorBase) -> TensorBase:
    return Erf()(_floating(x))


class Erf(Function):
    """erf with the Abramowitz-Stegun 7.1.26 rational form (|error| < 1.5e-7); NumPy has no erf."""

    def forward(self, x):
        xp = self.xp
        s = xp.sign(x)
        a = xp.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * a)
        poly = t * (
            0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
        )  # noqa: E501
        return (s * (1.0 - poly * xp.exp(-a * a))).astype(x.dtype, copy=False)

    def backward(self, gy):
        x = self.inputs[0]
        return gy * exp(-(x * x)) * (2.0 / math.sqrt(math.pi))


@on_device
def isfinite(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.isfinite(x.array))


@on_device
def isnan(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.isnan(x.array))


def lerp(a: TensorBase, b, weight) -> TensorBase:
    return a + (b - a) * weight


# More unary math (PyTorch's names). Integer inputs compute in the default float32, as PyTorch's
# float ops do; the rounding family keeps integer tensors as they are. ------------------------
def _floating(x: TensorBase) -> TensorBase:
    return x if _kind(x.dtype) in "fc" else x.to(floating(x.dtype))


class _Rounding(Function):
    """floor/ceil/round/trunc (`how`): piecewise constant, so the gradient is zero."""

    saves_inputs = False
    how = "floor"

    def __init__(self, decimals=0):
        self.decimals = decimals

    def forward(self, x):
        if _kind(x.dtype) in "iub":
            return x.copy()
        if self.how == "round":
            return self.xp.round(x, self.decimals)
        return getattr(self.xp, self.how)(x)

    def backward(self, gy):
        return _const(gy, gy.xp.zeros(gy.shape, gy.dtype))


class Floor(_Rounding):
    how = "floor"


class Ceil(_Rounding):
    how = "ceil"


class Round(_Rounding):
    how = "round"


class Trunc(_Rounding):
    how = "trunc"


def floor(x: TensorBase) -> TensorBase:
    return Floor()(x)


def ceil(x: TensorBase) -> TensorBase:
    return Ceil()(x)


def round(x: TensorBase, decimals: int = 0) -> TensorBase:  # noqa: A001
    """Round half to even, to `decimals` decimal places (as torch.round)."""
    return Round(int(decimals))(x)


def trunc(x: TensorBase) -> TensorBase:
    return Trunc()(x)


fix = trunc


def frac(x: TensorBase) -> TensorBase:
    """x - trunc(x): the fractional part, with the sign of x (gradient 1)."""
    return x - trunc(x)


class _UnaryMath(Function):
    """y = f(x) on floats; `grad(x, y)` gives dy/dx in engine ops (differentiable again)."""

    def forward(self, x):
        return getattr(self.xp, self.fn)(x)

    def backward(self, gy):
        return gy * self.grad(self.inputs[0], self.output())


def _math(name, fn, grad, doc):
    cls = type(name.capitalize(), (_UnaryMath,), {"fn": fn, "grad": staticmethod(grad)})

    def op(x: TensorBase) -> TensorBase:
        return cls()(_floating(x))

    op.__name__, op.__qualname__, op.__doc__ = name, name, doc
    return cls, _autocast_op(name)(op)


_LN2, _LN10 = math.log(2.0), math.log(10.0)
Log2, log2 = _math("log2", "log2", lambda x, y: 1.0 / (x * _LN2), "Elementwise log base 2.")
Log10, log10 = _math("log10", "log10", lambda x, y: 1.0 / (x * _LN10), "Elementwise log base 10.")
Exp2, exp2 = _math("exp2", "exp2", lambda x, y: y * _LN2, "Elementwise 2 ** x.")
Expm1, expm1 = _math("expm1", "expm1", lambda x, y: y + 1.0, "exp(x) - 1, exact near 0.")
Asin, asin = _math("asin", "arcsin", lambda x, y: rsqrt(1.0 - x * x), "Elementwise arcsine.")
Acos, acos = _math("acos", "arccos", lambda x, y: -rsqrt(1.0 - x * x), "Elementwise arccosine.")
Atan, atan = _math("atan", "arctan", lambda x, y: 1.0 / (1.0 + x * x), "Elementwise arctangent.")
Sinh, sinh = _math("sinh", "sinh", lambda x, y: cosh(x), "Hyperbolic sine.")
Cosh, cosh = _math("cosh", "cosh", lambda x, y: sinh(x), "Hyperbolic cosine.")
Asinh, asinh = _math(
    "asinh", "arcsinh", lambda x, y: rsqrt(x * x + 1.0), "Inverse hyperbolic sine."
)
Acosh, acosh = _math(
    "acosh", "arccosh", lambda x, y: rsqrt((x - 1.0) * (x + 1.0)), "Inverse hyperbolic cosine."
)
Atanh, atanh = _math(
    "atanh", "arctanh", lambda x, y: 1.0 / (1.0 - x * x), "Inverse hyperbolic tangent."
)
arcsin, arccos, arctan = asin, acos, atan
arcsinh, arccosh, arctanh = asinh, acosh, atanh


class Atan2(Function):
    def forward(self, a, b):
        return self.xp.arctan2(a, b)

    def backward(self, gy):
        a, b = self.inputs
        r = gy / (a * a + b * b)
        return sum_to(r * b, a.shape), sum_to(-r * a, b.shape)


def atan2(input, other) -> TensorBase:
    """The angle of (other, input) in (-pi, pi], elementwise with broadcasting."""
    a, b = _binary_operands(input, other)
    return Atan2()(*_float_pair(a, b))


arctan2 = atan2


def _float_pair(a: TensorBase, b: TensorBase):
    """Both operands in one floating dtype (integers compute in float32, as in PyTorch)."""
    dt = numpy.result_type(_floating(a).dtype, _floating(b).dtype)
    return (a if a.dtype == dt else a.to(dt)), (b if b.dtype == dt else b.to(dt))


class Fmod(Function):
    def forward(self, a, b):
        return self.xp.fmod(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy, a.shape) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            gb = sum_to(-gy * _const(gy, self.xp.trunc(a.array / b.array)), b.shape)
        return ga, gb


def fmod(input, other) -> TensorBase:
    """C's remainder (the sign of `input`): input - trunc(input / other) * other."""
    a, b = _binary_operands(input, other)
    if a.dtype != b.dtype:
        dt = numpy.result_type(a.dtype, b.dtype)
        a, b = a.to(dt), b.to(dt)
    return Fmod()(a, b)


class Copysign(Function):
    def forward(self, a, b):
        return self.xp.copysign(a, b)

    def backward(self, gy):
        # d/da |a| sign(b) = y / a where a != 0 (0 there, as PyTorch); b gets no gradient.
        a, b = self.inputs
        y, safe = self.output(), where(a == 0, 1.0, a)
        ga = sum_to(where(a == 0, 0.0, gy * y / safe), a.shape)
        return ga, sum_to(gy * 0.0, b.shape)


def copysign(input, other) -> TensorBase:
    """|input| with the sign (bit) of `other`, elementwise with broadcasting."""
    a, b = _binary_operands(input, other)
    return Copysign()(*_float_pair(a, b))


@on_device
def isinf(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.isinf(x.array))


@on_device
def isposinf(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.isposinf(x.array))


@on_device
def isneginf(x: TensorBase) -> TensorBase:
    return _const(x, x.xp.isneginf(x.array))


@on_device
def isclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False):
    """|input - other| <= atol + rtol * |other|, elementwise (bool, no gradient)."""
    a, b = _binary_operands(input, other)
    return _const(a, a.xp.isclose(a.array, b.array, rtol=rtol, atol=atol, equal_nan=equal_nan))


@on_device
def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False):
    """True when every element is close (a Python bool: a device-to-host sync on the GPU)."""
    return bool(isclose(input, other, rtol, atol, equal_nan).array.all())


class LogAddExp(Function):
    def forward(self, a, b):
        return self.xp.logaddexp(a, b)

    def backward(self, gy):
        a, b = self.inputs
        y = self.output()
        return sum_to(gy * exp(a - y), a.shape), sum_to(gy * exp(b - y), b.shape)


def logaddexp(input, other) -> TensorBase:
    """log(exp(input) + exp(other)) without overflow, elementwise with broadcasting."""
    a, b = _binary_operands(input, other)
    return LogAddExp()(*_float_pair(a, b))


__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "where",
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "clip",
    "clamp",
    "square",
    "rsqrt",
    "log1p",
    "sign",
    "erf",
    "isfinite",
    "isnan",
    "lerp",
    "floor",
    "ceil",
    "round",
    "trunc",
    "fix",
    "frac",
    "fmod",
    "copysign",
    "log2",
    "log10",
    "exp2",
    "expm1",
    "asin",
    "acos",
    "atan",
    "atan2",
    "arcsin",
    "arccos",
    "arctan",
    "arctan2",
    "sinh",
    "cosh",
    "asinh",
    "acosh",
    "atanh",
    "arcsinh",
    "arccosh",
    "arctanh",
    "isinf",
    "isposinf",
    "isneginf",
    "isclose",
    "allclose",
    "logaddexp",
]
