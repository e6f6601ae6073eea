"""`Tensor`: an n-dimensional array on a device (NumPy on cpu, CuPy on cuda) with its history.

`TensorBase` (engine/tensorbase.py) holds the array and the autograd record; `Tensor` adds the
methods and operators, each the engine op of the same name (`x.exp()` is `engine.exp(x)`). This
module sits above engine.ops and imports it; the ops make their outputs with `type(x)._wrap`.
"""

from __future__ import annotations

import numbers

import numpy

from . import autocast_mode as _autocast
from . import autograd
from .device import CPU, Device, array_device, cupy
from .device import device as _device
from .dtypes import BFLOAT16
from .dtypes import as_dtype as _dtype
from .dtypes import kind as _kind
from .ops import indexing as _indexing
from .ops import linalg as _linalg
from .ops import logical as _logical
from .ops import math as _math
from .ops import reduction as _reduction
from .ops import scan as _scan
from .ops import shape as _shape
from .tensorbase import TensorBase, default_dtype

__all__ = ["Tensor", "tensor", "as_tensor", "from_numpy"]


class Tensor(TensorBase):
    """An array on a device with its autograd record; methods and operators are engine ops."""

    __slots__ = ()

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False):
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        self.array, self._device = t.array, t._device
        self.grad, self.grad_fn, self.requires_grad = None, None, t.requires_grad
        self._version, self._retains_grad, self._hooks = [0], False, None

    # An op's result is a plain Tensor, also when an input is a Parameter (PyTorch's rule).
    @staticmethod
    def _new(array, device: Device, requires_grad: bool = False, grad_fn=None) -> Tensor:
        return Tensor._wrap(array, device, requires_grad, grad_fn)

    def _operand(self, data) -> Tensor:
        """A number takes this tensor's dtype (float32 when a float meets an integer tensor); an
        array keeps its own and moves to this tensor's device (a cpu NumPy array is not copied)."""
        if isinstance(data, numbers.Number):
            kind = _kind(self.dtype)
            if isinstance(data, bool) or (isinstance(data, numbers.Integral) and kind in "fciu"):
                dtype = self.dtype
            elif kind in "fc":
                dtype = self.dtype
            else:
                dtype = numpy.float32
            with self._device:
                return Tensor._wrap(self.xp.asarray(data, dtype=dtype), self._device)
        return as_tensor(data, device=self._device)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def to(self, *args, **kwargs) -> Tensor:
        """`.to(device)`, `.to(dtype)`, `.to(device, dtype)` or `.to(other_tensor)`."""
        dev, dtype = to_args(args, kwargs)
        out = self
        if dev is not None and dev != self._device:
            out = _shape.to_device(out, dev)
        if dtype is not None and dtype != out.dtype:
            out = _shape.astype(out, dtype)
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def float(self) -> Tensor:
        return self.to(numpy.float32)

    def double(self) -> Tensor:
        return self.to(numpy.float64)

    def half(self) -> Tensor:
        return self.to(numpy.float16)

    def bfloat16(self) -> Tensor:
        return self.to(BFLOAT16)

    def long(self) -> Tensor:
        return self.to(numpy.int64)

    def int(self) -> Tensor:
        return self.to(numpy.int32)

    def bool(self) -> Tensor:
        return self.to(numpy.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def register_hook(self, hook) -> autograd.RemovableHandle:
        """Call `hook(grad)` each time the gradient with respect to this tensor is computed (once
        per backward, with the sum over all its uses); a returned Tensor replaces the gradient.
        On a leaf it runs before the gradient is accumulated into `.grad`."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        return autograd.add_hook(self, 0, hook)

    def register_post_accumulate_grad_hook(self, hook) -> autograd.RemovableHandle:
        """Call `hook(tensor)` after this leaf's `.grad` was accumulated in a backward (not in
        `engine.grad`, which accumulates nothing); its return value is ignored."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        return autograd.add_hook(self, 1, hook)

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (multivariate chain rule)."""
        autograd.backward(self, gradient, retain_graph, create_graph)

    # Operators ----------------------------------------------------------------------------
    def __add__(self, other):
        return _math.add(self, other)

    def __radd__(self, other):
        return _math.add(self, other)

    def __sub__(self, other):
        return _math.sub(self, other)

    def __rsub__(self, other):
        return _math.sub(other, self)

    def __mul__(self, other):
        return _math.mul(self, other)

    def __rmul__(self, other):
        return _math.mul(self, other)

    def __truediv__(self, other):
        return _math.div(self, other)

    def __rtruediv__(self, other):
        if _autocast.is_active():  # PyTorch's: reciprocal (on the cuda float32 list) * other
            (self,) = _autocast.cast_inputs("reciprocal", self)
        return _math.div(other, self)

    def __pow__(self, other):
        return _math.pow(self, other)

    def __rpow__(self, other):
        return _math.pow(other, self)

    def __matmul__(self, other):
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other):
        return _linalg.matmul(other, self)

    def __neg__(self):
        return _math.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _math.abs(self)

    # `x += y` is in-place (PyTorch's manual SGD `with no_grad(): w -= lr * w.grad` keeps w the
    # same leaf), except on a graph tensor under grad mode, where the tape cannot record in-place
    # ops: there it rebinds to the out-of-place result. A leaf requiring grad raises (add_).
    def _records(self) -> bool:
        return self.grad_fn is not None and self.requires_grad and autograd.is_grad_enabled()

    def __iadd__(self, other):
        return self + other if self._records() else self.add_(other)

    def __isub__(self, other):
        return self - other if self._records() else self.sub_(other)

    def __imul__(self, other):
        return self * other if self._records() else self.mul_(other)

    def __itruediv__(self, other):
        return self / other if self._records() else self.div_(other)

    # Bitwise operators (engine/ops/logical.py): integer and bool tensors, Python ints wrap to
    # the tensor's dtype; the reflected forms serve `1 & t`.
    def __invert__(self):
        return _logical.bitwise_not(self)

    def __and__(self, other):
        return _logical.bitwise_and(self, other)

    def __rand__(self, other):
        return _logical.bitwise_and(other, self)

    def __or__(self, other):
        return _logical.bitwise_or(self, other)

    def __ror__(self, other):
        return _logical.bitwise_or(other, self)

    def __xor__(self, other):
        return _logical.bitwise_xor(self, other)

    def __rxor__(self, other):
        return _logical.bitwise_xor(other, self)

    def __lshift__(self, other):
        return _logical.bitwise_left_shift(self, other)

    def __rlshift__(self, other):
        return _logical.bitwise_left_shift(other, self)

    def __rshift__(self, other):
        return _logical.bitwise_right_shift(self, other)

    def __rrshift__(self, other):
        return _logical.bitwise_right_shift(other, self)

    def __getitem__(self, index):
        return _shape.getitem(self, index)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # Methods that are engine ops, the tensor their first argument (x.exp() is engine.exp(x)).
    exp = _math.exp
    log = _math.log
    log1p = _math.log1p
    sqrt = _math.sqrt
    rsqrt = _math.rsqrt
    abs = _math.abs
    sin = _math.sin
    cos = _math.cos
    tanh = _math.tanh
    sigmoid = _math.sigmoid
    relu = _math.relu
    clip = _math.clip
    clamp = _math.clamp
    square = _math.square
    sign = _math.sign
    erf = _math.erf
    neg = _math.neg
    pow = _math.pow
    add = _math.add
    sub = _math.sub
    mul = _math.mul
    div = _math.div
    maximum = _math.maximum
    minimum = _math.minimum
    isfinite = _math.isfinite
    isnan = _math.isnan
    lerp = _math.lerp
    floor = _math.floor
    ceil = _math.ceil
    round = _math.round
    trunc = _math.trunc
    fix = _math.fix
    frac = _math.frac
    fmod = _math.fmod
    copysign = _math.copysign
    log2 = _math.log2
    log10 = _math.log10
    exp2 = _math.exp2
    expm1 = _math.expm1
    asin = _math.asin
    acos = _math.acos
    atan = _math.atan
    atan2 = _math.atan2
    arcsin = _math.arcsin
    arccos = _math.arccos
    arctan = _math.arctan
    arctan2 = _math.arctan2
    sinh = _math.sinh
    cosh = _math.cosh
    asinh = _math.asinh
    acosh = _math.acosh
    atanh = _math.atanh
    arcsinh = _math.arcsinh
    arccosh = _math.arccosh
    arctanh = _math.arctanh
    isinf = _math.isinf
    isposinf = _math.isposinf
    isneginf = _math.isneginf
    isclose = _math.isclose
    allclose = _math.allclose
    logaddexp = _math.logaddexp
    logical_and = _logical.logical_and
    logical_or = _logical.logical_or
    logical_xor = _logical.logical_xor
    logical_not = _logical.logical_not
    bitwise_and = _logical.bitwise_and
    bitwise_or = _logical.bitwise_or
    bitwise_xor = _logical.bitwise_xor
    bitwise_not = _logical.bitwise_not
    bitwise_left_shift = _logical.bitwise_left_shift
    bitwise_right_shift = _logical.bitwise_right_shift
    matmul = _linalg.matmul
    bmm = _linalg.bmm
    baddbmm = _linalg.baddbmm
    outer = _linalg.outer
    cross = _linalg.cross
    sum = _reduction.sum
    mean = _reduction.mean
    var = _reduction.var
    std = _reduction.std
    max = _reduction.max
    min = _reduction.min
    amax = _reduction.amax
    amin = _reduction.amin
    prod = _reduction.prod
    argmax = _reduction.argmax
    argmin = _reduction.argmin
    logsumexp = _reduction.logsumexp
    norm = _linalg.norm
    any = _reduction.any
    all = _reduction.all
    count_nonzero = _reduction.count_nonzero
    cumsum = _scan.cumsum
    cumprod = _scan.cumprod
    cummax = _scan.cummax
    cummin = _scan.cummin
    logcumsumexp = _scan.logcumsumexp
    reshape = _shape.reshape
    view = _shape.view
    flatten = _shape.flatten
    unflatten = _shape.unflatten
    squeeze = _shape.squeeze
    unsqueeze = _shape.unsqueeze
    permute = _shape.permute
    transpose = _shape.transpose
    t = _shape.t
    expand = _shape.expand
    expand_as = _shape.expand_as
    broadcast_to = _shape.broadcast_to
    repeat = _shape.repeat
    tile = _shape.tile
    split = _shape.split
    chunk = _shape.chunk
    unbind = _shape.unbind
    flip = _shape.flip
    sum_to = _shape.sum_to
    clone = _shape.clone
    gather = _indexing.gather
    take_along_dim = _indexing.take_along_dim
    index_select = _indexing.index_select
    masked_fill = _indexing.masked_fill
    masked_select = _indexing.masked_select
    nonzero = _indexing.nonzero
    scatter = _indexing.scatter
    scatter_add = _indexing.scatter_add
    scatter_reduce = _indexing.scatter_reduce
    sort = _indexing.sort
    argsort = _indexing.argsort
    topk = _indexing.topk
    tril = _indexing.tril
    triu = _indexing.triu
    diag = _indexing.diag
    diagonal = _indexing.diagonal
    roll = _indexing.roll
    repeat_interleave = _indexing.repeat_interleave
    unfold = _indexing.unfold

    def reshape_as(self, other: Tensor) -> Tensor:
        return _shape.reshape(self, other.shape)

    view_as = reshape_as


def to_args(args: tuple, kwargs: dict) -> tuple[Device | None, numpy.dtype | None]:
    """(device, dtype) of a `to(...)` call (Tensor.to and Module.to): a device, a dtype, both,
    or a tensor whose device and dtype are taken; `non_blocking` is accepted and ignored."""
    dev, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, TensorBase):
            dev, dtype = a.device, a.dtype
        elif isinstance(a, Device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")):
            dev = a
        else:
            dtype = a
    return (None if dev is None else _device(dev)), _dtype(dtype)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor from data (NumPy arrays keep their dtype; Python floats become float32)."""
    dtype = _dtype(dtype)
    if isinstance(data, Tensor):
        arr, src = data.array, data.device
    elif isinstance(data, numpy.ndarray) and type(data) is numpy.ndarray:
        arr, src = data, CPU
    elif hasattr(data, "__cuda_array_interface__") or (
        hasattr(data, "device")
        and hasattr(data, "__dlpack__")
        and not isinstance(data, numpy.ndarray)
    ):
        arr, src = data, array_device(data)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in _flat(data)):
            data = [d.numpy() if isinstance(d, Tensor) else d for d in data]
        arr = numpy.asarray(data)
        if arr.dtype.kind not in "biufc":  # strings, bytes, objects, None: not a tensor
            raise TypeError(
                f"tensor() takes numbers (a number, nested lists of numbers or an array), got "
                f"{type(data).__name__} {_short(data)} (dtype {arr.dtype})"
            )
        if dtype is None and not isinstance(data, numpy.generic):
            dtype = default_dtype(arr)
        src = CPU
    dev = _device(device) if device is not None else src
    if dev.type == "cuda":
        cp = cupy()
        if src.type == "cuda" and src != dev:
            arr = cp.asnumpy(arr)  # from another GPU through the host
        with cp.cuda.Device(dev.index):
            arr = cp.array(arr, dtype=dtype, copy=True)  # one transfer (or copy) onto dev
    else:
        if src.type == "cuda":
            arr = cupy().asnumpy(arr)
        arr = numpy.array(arr, dtype=dtype, copy=True)
    t = Tensor._wrap(arr, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _short(data) -> str:
    text = repr(data)
    return text if len(text) <= 40 else text[:37] + "..."


def _flat(seq):
    for s in seq:
        if isinstance(s, (list, tuple)):
            yield from _flat(s)
        else:
            yield s


def as_tensor(data, dtype=None, device=None, like: Tensor | None = None) -> Tensor:
    """Wrap without copying when possible; scalars take the dtype and device of `like`."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    if like is not None and isinstance(data, numbers.Number) and dtype is None:
        return like._operand(data)
    dev = _device(device) if device is not None else (like.device if like is not None else None)
    if isinstance(data, numpy.ndarray) and dev in (None, CPU):
        return Tensor._wrap(data if dtype is None else data.astype(dtype, copy=False), CPU)
    return tensor(data, dtype=dtype, device=dev)


def from_numpy(array: numpy.ndarray) -> Tensor:
    """A cpu tensor sharing memory with `array`."""
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array, CPU)
