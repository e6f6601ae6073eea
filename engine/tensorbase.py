"""`TensorBase`: the record the tape runs on: an array on a device, its gradient and its creator.

`engine.Tensor` (engine/tensor.py) subclasses it with the methods that are engine ops (`x.exp()`,
`x + y`, `x.sum(dim)`). The layers below the ops (the tape in engine/autograd.py, the ops in
engine/ops/) work on this class and make their results with `x._new` and `x._operand`, which
engine.Tensor implements, so they never import engine.tensor: the imports point one way,
grad_mode <- tensorbase <- autograd <- ops <- tensor.
"""

from __future__ import annotations

import numpy

from . import random
from .device import Device, array_device, cupy, on_device, raise_deferred
from .dtypes import kind as _kind
from .grad_mode import is_grad_enabled

__all__ = ["TensorBase", "default_dtype", "promote_types", "result_type", "floating"]


class TensorBase:
    """An array plus the autograd record: `grad`, `requires_grad`, `grad_fn`."""

    __slots__ = (
        "array",
        "grad",
        "requires_grad",
        "grad_fn",
        "_device",
        "_version",
        "_retains_grad",
        "_hooks",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy scalars on the left defer to Tensor's reflected operators
    __hash__ = object.__hash__

    @classmethod
    def _wrap(cls, array, device: Device, requires_grad: bool = False, grad_fn=None):
        """Fast internal constructor around a raw array already on `device`."""
        t = object.__new__(cls)
        t.array = array
        t._device = device
        t.grad = None
        t.requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._version = [0]
        t._retains_grad = False
        t._hooks = None
        return t

    # Implemented by engine.Tensor, the class of every op's result ----------------------------
    def _new(self, array, device: Device, requires_grad: bool = False, grad_fn=None):
        """A result of an op on this tensor: an engine.Tensor around `array` (on `device`)."""
        raise NotImplementedError

    def _operand(self, data):
        """`data` (a number, an array) as a tensor on this tensor's device, for an op with it."""
        raise NotImplementedError

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
    def data(self) -> TensorBase:
        """A tensor sharing this one's array, outside the graph (PyTorch's `.data`)."""
        return self._new(self.array, self._device)

    @data.setter
    def data(self, value: TensorBase) -> None:
        if isinstance(value, TensorBase):
            self.array, self._device = value.array, value.device
        else:
            self.array, self._device = value, array_device(value)

    # Conversion ---------------------------------------------------------------------------
    def numpy(self) -> numpy.ndarray:
        """The values as a host NumPy array (a copy from the GPU; shared memory on cpu).

        On the cpu, a tensor that requires grad gives a read-only view: writing into it would
        change values the tape recorded and give silently wrong gradients (PyTorch refuses
        `.numpy()` there; `.detach().numpy()` is the writable array, as in PyTorch).
        """
        if self._device.type == "cpu":
            if not self.requires_grad or not isinstance(self.array, numpy.ndarray):
                return self.array  # (a NumPy scalar is immutable already)
            view = self.array.view()
            view.flags.writeable = False
            return view
        raise_deferred()  # the host waits for the device here anyway
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
        if _kind(self.dtype) not in "iub" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __dlpack__(self, stream=None, **kwargs):
        return self.array.__dlpack__(**({} if stream is None else {"stream": stream}), **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def is_floating_point(self) -> bool:
        return _kind(self.dtype) == "f"

    # Autograd -----------------------------------------------------------------------------
    def detach(self) -> TensorBase:
        """Same values, cut from the graph; shares the array and its version counter."""
        t = self._new(self.array, self._device)
        t._version = self._version
        return t

    def detach_(self) -> TensorBase:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> TensorBase:
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf tensors")
        if requires_grad and _kind(self.dtype) not in "fc":
            raise RuntimeError(
                f"only floating point tensors can require gradients, got {self.dtype}"
            )
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        self._retains_grad = True

    def contiguous(self) -> TensorBase:
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
    def _inplace(self, array) -> TensorBase:
        if self.requires_grad and is_grad_enabled():
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
        if not isinstance(other, TensorBase):
            return other
        if other._device != self._device:
            raise RuntimeError(
                f"expected all tensors on the same device, found {self._device} and {other._device}"
            )
        return other.array

    @on_device
    def fill_(self, value) -> TensorBase:
        self._inplace(None).array.fill(self._raw(value))
        return self

    def zero_(self) -> TensorBase:
        return self.fill_(0)

    @on_device
    def add_(self, other, alpha=1) -> TensorBase:
        o = self._raw(other)
        self._inplace(None)
        self.array += o if alpha == 1 else alpha * o
        return self

    def sub_(self, other, alpha=1) -> TensorBase:
        return self.add_(other, alpha=-alpha)

    @on_device
    def mul_(self, other) -> TensorBase:
        o = self._raw(other)
        self._inplace(None)
        self.array *= o
        return self

    @on_device
    def div_(self, other) -> TensorBase:
        o = self._raw(other)
        self._inplace(None)
        self.array /= o
        return self

    @on_device
    def copy_(self, src) -> TensorBase:
        s = src.array if isinstance(src, TensorBase) else src
        if isinstance(src, TensorBase) and src.device != self._device:
            s = src.to(self._device).array
        return self._inplace(self.xp.broadcast_to(self.xp.asarray(s, dtype=self.dtype), self.shape))

    @on_device
    def clamp_(self, min=None, max=None) -> TensorBase:
        return self._inplace(self.xp.clip(self.array, min, max))

    clip_ = clamp_

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> TensorBase:
        return self._inplace(random.normal(self.shape, self.dtype, self._device, mean, std))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> TensorBase:
        return self._inplace(random.uniform(self.shape, self.dtype, self._device, a, b))

    def bernoulli_(self, p: float = 0.5) -> TensorBase:
        draw = random.uniform(self.shape, numpy.float32, self._device, 0.0, 1.0) < p
        return self._inplace(draw.astype(self.dtype))

    @on_device
    def _compare(self, other, op):
        """An elementwise op outside the graph (comparisons, %, //: no gradient)."""
        return self._new(op(self.array, self._raw(other)), self._device)

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

    @on_device
    def _promoted(self, other, op):
        """`op` on both operands in PyTorch's result dtype (%, //: no gradient)."""
        dtype = result_type(self, other)
        o = self._raw(other)
        a = self.array if self.dtype == dtype else self.array.astype(dtype)
        b = o.astype(dtype) if hasattr(o, "astype") else self.xp.asarray(o, dtype=dtype)
        return self._new(op(a, b), self._device)

    def __mod__(self, other):
        return self._promoted(other, lambda a, b: a % b)

    def __rmod__(self, other):
        return self._promoted(other, lambda a, b: b % a)

    def __floordiv__(self, other):
        return self._promoted(other, lambda a, b: a // b)

    def __rfloordiv__(self, other):
        return self._promoted(other, lambda a, b: b // a)

    def __setitem__(self, index, value):
        if isinstance(index, TensorBase):
            index = index.array
        elif isinstance(index, tuple):
            index = tuple(i.array if isinstance(i, TensorBase) else i for i in index)
        v = value.to(self._device).array if isinstance(value, TensorBase) else value
        self._inplace(None)
        split = split_int_indices(index)
        if split is None:
            self.array[index] = v
        else:  # PyTorch's rule: the ints select first (a view), the arrays index what is left
            first = tuple(int(i) if _is_int_index(i) else i for i in split[0])
            self.array[first][split[1]] = v


def _is_int_index(i) -> bool:
    """A Python/NumPy integer or a 0-d integer array (a 0-d tensor index is an int in PyTorch)."""
    if isinstance(i, (bool, numpy.bool_)):
        return False
    if isinstance(i, (int, numpy.integer)):
        return True
    return getattr(i, "ndim", None) == 0 and getattr(i, "dtype", numpy.dtype(bool)).kind in "iu"


def split_int_indices(index):
    """PyTorch's indexing rule as two NumPy steps, or None where NumPy's rule agrees.

    PyTorch applies integer indices first, as basic indexing (they remove their dims), then the
    index arrays; NumPy counts ints among the advanced indices when an index holds arrays, which
    moves the broadcast dims: `x[1, :, [0, 2]]` of x (2, 5, 6) is (5, 2) in PyTorch, (2, 5) in
    NumPy. Returns (first, then): the ints, slices, None and Ellipsis with each array replaced by
    full slices (a boolean mask spans its ndim dims), then the arrays with full slices elsewhere.
    """
    if not isinstance(index, tuple):
        return None
    arrays = [i for i in index if hasattr(i, "ndim") and not _is_int_index(i)]
    arrays += [i for i in index if isinstance(i, list)]
    if not arrays or not any(_is_int_index(i) for i in index):
        return None
    first, then = [], []
    for i in index:
        if _is_int_index(i):
            first.append(i)
        elif i is None or isinstance(i, slice):
            first.append(i)
            then.append(slice(None))
        elif i is Ellipsis:
            first.append(i)
            then.append(i)
        else:
            mask = i if hasattr(i, "dtype") else numpy.asarray(i)
            first.extend([slice(None)] * (mask.ndim if _kind(mask.dtype) == "b" else 1))
            then.append(i)
    return tuple(first), tuple(then)


def default_dtype(value) -> numpy.dtype:
    """Python floats become float32, ints int64, bools bool (PyTorch's defaults)."""
    arr = numpy.asarray(value)
    if _kind(arr.dtype) == "f":
        return numpy.dtype(numpy.float32)
    if _kind(arr.dtype) in "iu":
        return numpy.dtype(numpy.int64)
    return arr.dtype


# Type promotion (PyTorch's rules) ------------------------------------------------------------
_FLOAT = numpy.dtype(numpy.float32)  # PyTorch's default float dtype


def promote_types(a, b) -> numpy.dtype:
    """The dtype two dtypes compute in: PyTorch's table (an integer meeting a float takes the
    float's dtype, so int64 with float32 is float32 where NumPy says float64)."""
    a, b = numpy.dtype(a), numpy.dtype(b)
    if a == b:
        return a
    fa, fb = _kind(a) in "fc", _kind(b) in "fc"
    if fa != fb:
        return a if fa else b
    return numpy.result_type(a, b)


def _weak_dtype(x) -> numpy.dtype | None:
    """The dtype a Python (or NumPy) scalar stands for: bool, int64 or the default float."""
    if isinstance(x, (bool, numpy.bool_)):
        return numpy.dtype(bool)
    if isinstance(x, (int, numpy.integer)):
        return numpy.dtype(numpy.int64)
    if isinstance(x, (float, numpy.floating)):
        return _FLOAT
    return None


def _combine(higher, lower):
    """PyTorch's combine_categories: a lower-priority operand counts only when it is of a
    higher category (bool < integer < float) than the higher-priority ones."""
    if higher is None:
        return lower
    if lower is None or _kind(higher) in "fc":
        return higher
    if _kind(higher) == "b" or _kind(lower) in "fc":
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> numpy.dtype:
    """The dtype an elementwise op on `operands` computes in, as `torch.result_type`.

    Tensors with dimensions decide; 0-d tensors count only when of a higher category (an int32
    tensor with a float64 0-d tensor is float64, a float32 tensor with it float32); Python
    numbers last, as "weak" types (int64 or the default float32 standing for their category:
    int32 + 2 is int32, int32 + 2.5 float32, float16 + 2.5 float16).
    """
    dims = zero = weak = None
    for x in operands:
        dt = _weak_dtype(x)
        if dt is not None:
            weak = dt if weak is None else promote_types(weak, dt)
            continue
        dt = numpy.dtype(x.dtype)
        if x.ndim:
            dims = dt if dims is None else promote_types(dims, dt)
        else:
            zero = dt if zero is None else promote_types(zero, dt)
    return _combine(dims, _combine(zero, weak))


def floating(dtype) -> numpy.dtype:
    """The dtype a float-only op (exp, sqrt, true division) computes in: integers and bools in
    the default float32, as PyTorch."""
    dtype = numpy.dtype(dtype)
    return dtype if _kind(dtype) in "fc" else _FLOAT
