"""`Tensor`: an n-dimensional array on a device (NumPy on cpu, CuPy on cuda) with its history."""

from __future__ import annotations

import numbers
from collections import namedtuple

import numpy

from . import autograd
from .device import CPU, Device, array_device, cupy
from .device import device as _device

__all__ = ["Tensor", "tensor", "as_tensor", "from_numpy"]

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])

_DTYPES = {
    "float16": numpy.float16,
    "float32": numpy.float32,
    "float64": numpy.float64,
    "int8": numpy.int8,
    "int16": numpy.int16,
    "int32": numpy.int32,
    "int64": numpy.int64,
    "uint8": numpy.uint8,
    "bool": numpy.bool_,
    "float": numpy.float32,
    "double": numpy.float64,
    "half": numpy.float16,
    "long": numpy.int64,
    "int": numpy.int32,
}


def _dtype(dtype) -> numpy.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}")
        return numpy.dtype(_DTYPES[dtype])
    return numpy.dtype(dtype)


class Tensor:
    """An array plus the autograd record: `grad`, `requires_grad`, `grad_fn`."""

    __slots__ = (
        "array",
        "grad",
        "requires_grad",
        "grad_fn",
        "_device",
        "_version",
        "_retains_grad",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy scalars on the left defer to Tensor's reflected operators
    __hash__ = object.__hash__

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False):
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        self.array, self._device = t.array, t._device
        self.grad, self.grad_fn, self.requires_grad = None, None, t.requires_grad
        self._version, self._retains_grad = [0], False

    @classmethod
    def _wrap(cls, array, device: Device, requires_grad: bool = False, grad_fn=None) -> Tensor:
        """Fast internal constructor around a raw array already on `device`."""
        t = object.__new__(cls)
        t.array = array
        t._device = device
        t.grad = None
        t.requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._version = [0]
        t._retains_grad = False
        return t

    # Attributes ---------------------------------------------------------------------------
    @property
    def device(self) -> Device:
        return self._device

    @property
    def xp(self):
        return self._device.xp

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def size(self, dim: int | None = None):
        """The shape (PyTorch's `x.size()`), or one dimension's length with `dim`."""
        return self.array.shape if dim is None else self.array.shape[dim]

    def numel(self) -> int:
        return int(self.array.size)

    def dim(self) -> int:
        return self.array.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self) -> numpy.dtype:
        return self.array.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's array, outside the graph (PyTorch's `.data`)."""
        return Tensor._wrap(self.array, self._device)

    @data.setter
    def data(self, value: Tensor) -> None:
        self.array = value.array if isinstance(value, Tensor) else value
        self._device = array_device(self.array) if not isinstance(value, Tensor) else value.device

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    # Conversion ---------------------------------------------------------------------------
    def numpy(self) -> numpy.ndarray:
        """The values as a host NumPy array (a copy from the GPU; shared memory on cpu)."""
        if self._device.type == "cpu":
            return self.array
        return cupy().asnumpy(self.array)

    def item(self):
        if self.array.size != 1:
            raise ValueError(
                "only one-element tensors can be converted to Python scalars, "
                f"got shape {self.shape}"
            )
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.array.size != 1:
            raise RuntimeError(
                f"Boolean value of a tensor with {self.array.size} values is ambiguous"
            )
        return bool(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __dlpack__(self, stream=None, **kwargs):
        return self.array.__dlpack__(**({} if stream is None else {"stream": stream}), **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def to(self, *args, **kwargs) -> Tensor:
        """`.to(device)`, `.to(dtype)`, `.to(device, dtype)` or `.to(other_tensor)`."""
        dev, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        for a in args:
            if isinstance(a, Tensor):
                dev, dtype = a.device, a.dtype
            elif isinstance(a, Device) or (
                isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")
            ):
                dev = a
            else:
                dtype = a
        out = self
        dev = None if dev is None else _device(dev)
        if dev is not None and dev != self._device:
            out = _ops().to_device(out, dev)
        dtype = _dtype(dtype)
        if dtype is not None and dtype != out.dtype:
            out = _ops().astype(out, dtype)
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

    def long(self) -> Tensor:
        return self.to(numpy.int64)

    def int(self) -> Tensor:
        return self.to(numpy.int32)

    def bool(self) -> Tensor:
        return self.to(numpy.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def is_floating_point(self) -> bool:
        return self.dtype.kind == "f"

    # Autograd -----------------------------------------------------------------------------
    def detach(self) -> Tensor:
        """Same values, cut from the graph; shares the array and its version counter."""
        t = Tensor._wrap(self.array, self._device)
        t._version = self._version
        return t

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf tensors")
        if requires_grad and self.dtype.kind not in "fc":
            raise RuntimeError(
                f"only floating point tensors can require gradients, got {self.dtype}"
            )
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        self._retains_grad = True

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (multivariate chain rule)."""
        autograd.backward(self, gradient, retain_graph, create_graph)

    def contiguous(self) -> Tensor:
        return self

    # Representation -----------------------------------------------------------------------
    def __repr__(self) -> str:
        body = numpy.array2string(
            self.numpy(), separator=", ", precision=4, threshold=200, prefix="tensor("
        )
        extras = []
        if self._device.type != "cpu":
            extras.append(f"device='{self._device}'")
        if self.dtype not in (numpy.float32, numpy.int64, numpy.bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}Backward>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # In-place (raw updates, used for initialisation and optimizer steps) ------------------
    def _inplace(self, array) -> Tensor:
        if self.requires_grad and autograd.is_grad_enabled():
            if self.grad_fn is None:
                raise RuntimeError(
                    "a leaf tensor that requires grad is being used in an in-place operation; "
                    "wrap it in `with engine.no_grad():`"
                )
            # The tape does not record in-place ops: the gradient would silently ignore them.
            raise RuntimeError(
                f"in-place operation on a tensor of shape {self.shape} that is part of the graph "
                f"(grad_fn=<{self.grad_fn.name}Backward>): in-place ops are not recorded, use "
                "the out-of-place form (y = y * 2) instead"
            )
        if array is not None and array is not self.array:
            self.array[...] = array
        self._version[0] += 1
        return self

    def _raw(self, other):
        """The array of `other` for a raw op with this tensor (same device required)."""
        if not isinstance(other, Tensor):
            return other
        if other._device != self._device:
            raise RuntimeError(
                f"expected all tensors on the same device, found {self._device} and {other._device}"
            )
        return other.array

    def fill_(self, value) -> Tensor:
        self._inplace(None).array.fill(self._raw(value))
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def add_(self, other, alpha=1) -> Tensor:
        o = self._raw(other)
        self._inplace(None)
        self.array += o if alpha == 1 else alpha * o
        return self

    def sub_(self, other, alpha=1) -> Tensor:
        return self.add_(other, alpha=-alpha)

    def mul_(self, other) -> Tensor:
        o = self._raw(other)
        self._inplace(None)
        self.array *= o
        return self

    def div_(self, other) -> Tensor:
        o = self._raw(other)
        self._inplace(None)
        self.array /= o
        return self

    def copy_(self, src) -> Tensor:
        s = src.array if isinstance(src, Tensor) else src
        if isinstance(src, Tensor) and src.device != self._device:
            s = src.to(self._device).array
        return self._inplace(self.xp.broadcast_to(self.xp.asarray(s, dtype=self.dtype), self.shape))

    def clamp_(self, min=None, max=None) -> Tensor:
        return self._inplace(self.xp.clip(self.array, min, max))

    clip_ = clamp_

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        from . import random

        return self._inplace(random.normal(self.shape, self.dtype, self._device, mean, std))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        from . import random

        return self._inplace(random.uniform(self.shape, self.dtype, self._device, a, b))

    def bernoulli_(self, p: float = 0.5) -> Tensor:
        from . import random

        draw = random.uniform(self.shape, numpy.float32, self._device, 0.0, 1.0) < p
        return self._inplace(draw.astype(self.dtype))

    # Operators ----------------------------------------------------------------------------
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(self, other)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(self, other)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __pow__(self, other):
        return _ops().pow(self, other)

    def __rpow__(self, other):
        return _ops().pow(other, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops().abs(self)

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

    def _compare(self, other, op):
        """An elementwise op outside the graph (comparisons, %, //: no gradient)."""
        return Tensor._wrap(op(self.array, self._raw(other)), self._device)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __eq__(self, other):  # type: ignore[override]
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):  # type: ignore[override]
        return self._compare(other, lambda a, b: a != b)

    def __mod__(self, other):
        return self._compare(other, lambda a, b: a % b)

    def __rmod__(self, other):
        return self._compare(other, lambda a, b: b % a)

    def __floordiv__(self, other):
        return self._compare(other, lambda a, b: a // b)

    def __rfloordiv__(self, other):
        return self._compare(other, lambda a, b: b // a)

    # Bitwise operators (engine/ops/logical.py): integer and bool tensors, Python ints wrap to
    # the tensor's dtype; the reflected forms serve `1 & t`.
    def __invert__(self):
        return _ops().bitwise_not(self)

    def __and__(self, other):
        return _ops().bitwise_and(self, other)

    def __rand__(self, other):
        return _ops().bitwise_and(other, self)

    def __or__(self, other):
        return _ops().bitwise_or(self, other)

    def __ror__(self, other):
        return _ops().bitwise_or(other, self)

    def __xor__(self, other):
        return _ops().bitwise_xor(self, other)

    def __rxor__(self, other):
        return _ops().bitwise_xor(other, self)

    def __lshift__(self, other):
        return _ops().bitwise_left_shift(self, other)

    def __rlshift__(self, other):
        return _ops().bitwise_left_shift(other, self)

    def __rshift__(self, other):
        return _ops().bitwise_right_shift(self, other)

    def __rrshift__(self, other):
        return _ops().bitwise_right_shift(other, self)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    def __setitem__(self, index, value):
        if isinstance(index, Tensor):
            index = index.array
        elif isinstance(index, tuple):
            index = tuple(i.array if isinstance(i, Tensor) else i for i in index)
        v = value.to(self._device).array if isinstance(value, Tensor) else value
        self._inplace(None)
        self.array[index] = v

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))


# The methods that mirror functional ops (x.exp(), x.sum(dim), x.reshape(...)) are attached by
# engine.ops when it is imported, so each op is written once.


_ops_module = None


def _ops():
    """engine.ops, imported once (it imports this module, so not at the top)."""
    global _ops_module
    if _ops_module is None:
        from . import ops

        _ops_module = ops
    return _ops_module


def _default_dtype(value) -> numpy.dtype:
    """Python floats become float32, ints int64, bools bool (PyTorch's defaults)."""
    arr = numpy.asarray(value)
    if arr.dtype.kind == "f":
        return numpy.dtype(numpy.float32)
    if arr.dtype.kind in "iu":
        return numpy.dtype(numpy.int64)
    return arr.dtype


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
        if dtype is None and not isinstance(data, numpy.generic):
            dtype = _default_dtype(arr)
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
        kind = like.dtype.kind
        if isinstance(data, bool) or (isinstance(data, numbers.Integral) and kind in "fciu"):
            dtype = like.dtype
        elif kind in "fc":
            dtype = like.dtype
        else:
            dtype = numpy.float32
        return Tensor._wrap(like.xp.asarray(data, dtype=dtype), like.device)
    dev = _device(device) if device is not None else (like.device if like is not None else None)
    if isinstance(data, numpy.ndarray) and dev in (None, CPU):
        return Tensor._wrap(data if dtype is None else data.astype(dtype, copy=False), CPU)
    return tensor(data, dtype=dtype, device=dev)


autograd._Tensor, autograd._as_tensor = Tensor, as_tensor


def from_numpy(array: numpy.ndarray) -> Tensor:
    """A cpu tensor sharing memory with `array`."""
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array, CPU)
