"""The stand-in ``cupy.ndarray``: a NumPy array playing device memory.

It is a distinct type, so code that hands a host ``numpy.ndarray`` where a device array is needed
(or the reverse) fails here as it fails under CuPy: ``numpy.asarray(device_array)`` raises
``TypeError`` (use ``.get()``/``cupy.asnumpy``), and mixing host arrays into device operations
raises ``TypeError``. Operations run NumPy on the wrapped array and wrap the result; reductions
give 0-d device arrays, as CuPy does, never NumPy scalars.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import numpy as np

from .. import counters as _counters
from . import _api
from .cuda import runtime as _runtime

_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. "
    "Please use `.get()` to construct a NumPy array explicitly."
)
# Bytes that `cupy.empty` memory starts with: NaN for floats, so reading it before writing shows.
_EMPTY_BYTE = 0xFF


class _MemoryPointer:
    """What ``ndarray.data`` gives: ``.ptr`` is the address, as with CuPy."""

    __slots__ = ("ptr", "device_id")

    def __init__(self, ptr: int, device_id: int):
        self.ptr = ptr
        self.device_id = device_id


def foreign_device_error(device_id: int, where: str) -> ValueError:
    """CuPy's error for an array used where another device is current (no peer access)."""
    return ValueError(
        f"{where}: The device where the array resides ({device_id}) is different from the "
        f"current device ({_runtime._current}). Peer access is unavailable between these devices."
    )


class Flags:
    """What ``ndarray.flags`` gives, as ``cupy._core.flags.Flags``: exactly the read-only
    attributes of ``cupy_api.NDARRAY_FLAGS`` (no ``writeable``, unlike NumPy's flags) and
    indexing by their upper-case names."""

    __slots__ = ("_np_flags",)

    def __init__(self, np_flags):
        self._np_flags = np_flags

    def __getattr__(self, name: str):
        raise _api.missing(f"cupy.ndarray.flags.{name}", "'Flags' object")

    def __getitem__(self, name: str):
        key = str(name).lower()
        if key not in ("c_contiguous", "f_contiguous", "owndata"):
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return getattr(self, key)

    def __repr__(self) -> str:
        return "".join(
            f"  {n.upper()} : {getattr(self, n)}\n"
            for n in ("c_contiguous", "f_contiguous", "owndata")
        )


for _name in _api.tables.NDARRAY_FLAGS:  # each attribute CuPy's Flags has, read from NumPy's
    setattr(Flags, _name, property(lambda self, _n=_name: bool(getattr(self._np_flags, _n))))


class ndarray:  # noqa: N801 (CuPy's name)
    """Device array of the stand-in; ``._host`` is the NumPy array holding its memory and
    ``._dev`` the device it lives on (the current device when it was made, as in CuPy)."""

    __slots__ = ("_host", "_dev")
    __cuda_sim_device_array__ = True  # recognised by hostbuild without importing this module
    __array_priority__ = 100.0

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the CuPy stand-in has no raw memory pointers")
        self._host = _empty(shape, dtype, order)
        self._dev = _runtime._current

    @classmethod
    def _wrap(cls, host: np.ndarray, dev: int | None = None) -> "ndarray":
        obj = cls.__new__(cls)
        obj._host = host
        obj._dev = _runtime._current if dev is None else dev
        if _counters._open:
            _counters.allocated(host)
        return obj

    def _here(self, where: str) -> np.ndarray:
        """The host array, for work a kernel does: only on the current device (as CuPy)."""
        if self._dev != _runtime._current:
            raise foreign_device_error(self._dev, where)
        return self._host

    def copy(self, order="C") -> "ndarray":
        """A copy on the *current* device, from any device (CuPy copies between peers here)."""
        _counters.launch("copy")
        return ndarray._wrap(np.array(self._host, order=order, copy=True))

    # ------------------------------------------------------------------ host transfers
    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        """Copy to a host ``numpy.ndarray``."""
        _counters.sync("cupy.ndarray.get")
        if out is not None:
            out[...] = self._host
            return out
        return np.array(self._host, order=order, copy=True)

    def set(self, arr: np.ndarray, stream=None) -> None:
        """Copy a host array of the same shape and dtype into this array."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"set() needs a numpy.ndarray, got {type(arr).__name__}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(
                f"set(): shape/dtype mismatch: device {self.shape} {self.dtype}, "
                f"host {arr.shape} {arr.dtype}"
            )
        _counters.h2d("cupy.ndarray.set")
        self._host[...] = arr

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def tolist(self):
        _counters.sync("cupy.ndarray.tolist")
        return self._host.tolist()

    def item(self):
        _counters.sync("cupy.ndarray.item")
        return self._host.item()

    # ------------------------------------------------------------------ attributes
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: Flags(self._host.flags))

    @property
    def data(self) -> _MemoryPointer:
        return _MemoryPointer(self._host.ctypes.data, self._dev)

    @property
    def device(self):
        from .cuda import Device

        return Device(self._dev)

    @property
    def T(self) -> "ndarray":  # noqa: N802 (a view: no kernel, so from any device)
        return ndarray._wrap(self._host.T, self._dev)

    @property
    def base(self):
        return None if self._host.base is None else ndarray._wrap(self._host.base, self._dev)

    def __getattr__(self, name: str):
        # Only what CuPy's ndarray has (cupy_api.NDARRAY), as numpy's method on the host array,
        # wrapped and checked against CuPy's signature; never a dunder or a private name, which
        # would let numpy read the memory implicitly (__array_interface__).
        entry = None if name.startswith("_") else _api.tables.NDARRAY.get(name)
        if entry is None:
            raise _api.missing(f"cupy.ndarray.{name}", "'cupy.ndarray' object")
        try:
            value = getattr(self._host, name)
        except AttributeError:
            raise _api.not_simulated(f"cupy.ndarray.{name}") from None
        if callable(value):
            params = entry[1] if entry[0] == "function" else None
            return _wrap_callable(value, f"cupy.ndarray.{name}", params, owner=self)
        if isinstance(value, np.ndarray) and np.may_share_memory(value, self._host):
            return ndarray._wrap(value, self._dev)  # .real, .imag: views
        return wrap(value)

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(_api.tables.NDARRAY))

    # ------------------------------------------------------------------ interop protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # As CuPy's (cupy/_core/core.pyx): numpy's ufunc runs cupy's ufunc of the same name (or
        # cupyx.scipy.special's); NotImplemented, so a TypeError, where CuPy has none.
        from .. import cupy as cp
        from ..cupyx.scipy import special

        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
            return NotImplemented
        try:
            func = getattr(cp, ufunc.__name__, None) or getattr(special, ufunc.__name__)
            if method != "__call__":
                func = getattr(func, method)
        except AttributeError:
            return NotImplemented
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        # As CuPy's: numpy.f(device array) runs cupy.f, found through f's module path
        # (numpy.linalg.norm -> cupy.linalg.norm); NotImplemented, so a TypeError, where CuPy
        # lacks it (numpy.put_along_axis on a cupy array fails on a GPU).
        from .. import cupy as cp

        try:
            module = functools.reduce(getattr, func.__module__.split(".")[1:], cp)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func or not all(issubclass(t, (ndarray, np.ndarray)) for t in types):
            return NotImplemented
        return cupy_func(*args, **kwargs)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        # The capsule describes host memory (this is NumPy), but the array reports a CUDA device
        # below, so numpy/torch refuse it as they refuse a real CuPy array on a CPU machine.
        kwargs = {} if max_version is None else {"max_version": max_version}
        return self._host.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (2, self._dev)  # kDLCUDA

    def __copy__(self):
        _counters.launch("copy")
        return ndarray._wrap(self._host.copy(), self._dev)

    def __deepcopy__(self, memo):
        _counters.launch("copy")
        return ndarray._wrap(self._host.copy(), self._dev)

    def __reduce__(self):
        return (ndarray._wrap, (self._host.copy(), self._dev))

    # ------------------------------------------------------------------ python protocol
    def __repr__(self) -> str:
        _counters.sync("repr(cupy.ndarray)")
        return repr(self._host)

    def __str__(self) -> str:
        _counters.sync("str(cupy.ndarray)")
        return str(self._host)

    def __len__(self) -> int:
        return len(self._host)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (ndarray._wrap(self._host[i], self._dev) for i in range(len(self._host)))

    def __bool__(self) -> bool:
        _counters.sync("bool(cupy.ndarray)")
        return bool(self._host)

    def __int__(self) -> int:
        _counters.sync("int(cupy.ndarray)")
        return int(self._host)

    def __float__(self) -> float:
        _counters.sync("float(cupy.ndarray)")
        return float(self._host)

    def __complex__(self) -> complex:
        _counters.sync("complex(cupy.ndarray)")
        return complex(self._host)

    def __format__(self, spec: str) -> str:
        _counters.sync("format(cupy.ndarray)")
        return format(self._host, spec)

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key):
        _count_index(key, "cupy.ndarray.__getitem__")
        key = _wrap_indices(_index(key, "cupy.ndarray.__getitem__"), self._host.shape)
        out = self._host[key]
        if isinstance(out, np.generic) and not _is_fancy(key):  # CuPy: a 0-d view
            out = self._host[(*(key if isinstance(key, tuple) else (key,)), Ellipsis)]
        if isinstance(out, np.ndarray) and np.may_share_memory(out, self._host):
            return ndarray._wrap(out, self._dev)  # a view: no kernel, so from any device
        self._here("cupy.ndarray.__getitem__")  # a gather kernel
        _counters.launch("getitem")
        return wrap(out)

    def __setitem__(self, key, value) -> None:
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise TypeError(
                f"cannot assign a host numpy.ndarray {value.dtype} {value.shape} into a device "
                "array; copy it first with cupy.asarray(...)"
            )
        where = "cupy.ndarray.__setitem__"
        host = self._here(where)
        _count_index(key, where)
        _counters.launch("setitem")
        host[_wrap_indices(_index(key, where), host.shape)] = (
            value._here(where) if isinstance(value, ndarray) else value
        )


def _empty(shape, dtype, order="C") -> np.ndarray:
    host = np.empty(shape, dtype=dtype, order=order)
    if host.dtype.kind in "fciub":
        # (through a 1-D view: NumPy cannot view a 0-d array as bytes of another size)
        host.reshape(-1, order="A").view(np.uint8)[...] = (
            _EMPTY_BYTE if host.dtype.kind != "b" else 0
        )
    return host


# ---------------------------------------------------------------------- wrap / unwrap


def wrap(x: Any) -> Any:
    """NumPy results -> device arrays (scalars become 0-d arrays, as CuPy returns them)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "OSUV":
            raise TypeError(f"CuPy does not support dtype {x.dtype}")
        return ndarray._wrap(x)
    if isinstance(x, np.generic):
        return ndarray._wrap(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(wrap(v) for v in x)
    if isinstance(x, list):
        return [wrap(v) for v in x]
    return x


def unwrap(x: Any, where: str) -> Any:
    """Device arrays -> their host arrays; a host array with data is an error (as in CuPy), and
    so is a device array of another device than the current one."""
    if isinstance(x, ndarray):
        return x._here(where)
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x
        raise TypeError(
            f"{where}: got a host numpy.ndarray {x.dtype} {x.shape} where a device array is "
            "needed (CuPy: Unsupported type <class 'numpy.ndarray'>); use cupy.asarray(...)"
        )
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v, where) for v in x)
    return x


def _count_index(key: Any, where: str) -> None:
    """What an index key costs beyond the kernel: a boolean mask makes CuPy count its true
    elements on the host (a sync); a host index list or array is copied to the device."""
    if not _counters._open:
        return
    for k in key if isinstance(key, tuple) else (key,):
        if isinstance(k, (ndarray, np.ndarray)) and k.dtype == np.bool_ and k.ndim > 0:
            _counters.sync(f"{where} with a boolean mask")
        if isinstance(k, list) or (isinstance(k, np.ndarray) and k.ndim > 0):
            _counters.h2d(where)


def _is_fancy(key: Any) -> bool:
    return any(isinstance(k, np.ndarray) for k in (key if isinstance(key, tuple) else (key,)))


def _wrap_indices(key: Any, shape: tuple) -> Any:
    """Integer index arrays as CuPy reads them: an out-of-range index wraps around (CuPy's
    documented difference from NumPy, which raises), so an unchecked index gives wrong values
    here too, not an error a GPU would never raise. Keys with ``...`` or ``None`` are left to
    NumPy."""
    keys = key if isinstance(key, tuple) else (key,)
    if any(
        k is Ellipsis or k is None or (isinstance(k, np.ndarray) and k.dtype == np.bool_)
        for k in keys
    ):
        return key
    out = []
    for axis, k in enumerate(keys):
        if isinstance(k, list):
            k = np.asarray(k)
        if isinstance(k, np.ndarray) and k.dtype.kind in "iu" and axis < len(shape) and shape[axis]:
            k = k % shape[axis]
        out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


def _index(key: Any, where: str) -> Any:
    """Index keys: device arrays unwrapped; host index arrays and lists allowed, as in CuPy."""
    if isinstance(key, ndarray):
        return key._here(where)
    if isinstance(key, tuple):
        return tuple(_index(k, where) for k in key)
    return key


def call_numpy(func: Callable, args, kwargs, where: str) -> Any:
    """Run a NumPy function on unwrapped arguments and wrap what it returns.

    ``out=`` keeps its identity: the caller gets back the very device array it passed.
    """
    out = kwargs.get("out")
    args = unwrap(tuple(args), where)
    kwargs = {k: unwrap(v, where) for k, v in kwargs.items()}
    result = func(*args, **kwargs)
    if _counters._open:
        _count_call(where, args, kwargs, result, getattr(func, "__self__", None))
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        if isinstance(result, tuple):
            pairs = zip(outs, result, strict=False)
            return tuple(o if isinstance(o, ndarray) else wrap(r) for o, r in pairs)
        if isinstance(outs[0], ndarray):
            return outs[0]
    return wrap(result)


# CuPy routines whose output size depends on the data: CuPy reads a count back (a sync).
_DATA_SIZED = {
    "cupy.nonzero",
    "cupy.ndarray.nonzero",
    "cupy.argwhere",
    "cupy.flatnonzero",
    "cupy.unique",
    "cupy.extract",
    "cupy.compress",
    "cupy.ndarray.compress",
}


def _count_call(where: str, args: tuple, kwargs: dict, result: Any, owner: Any) -> None:
    """Launches and syncs of one CuPy call that ran ``result = numpy_func(*args, **kwargs)``
    (``owner``: the host array of a method's ndarray)."""
    if where in _DATA_SIZED or (where == "cupy.where" and len(args) + len(kwargs) == 1):
        _counters.sync(where)
    if (
        where == "cupy.bincount"
        and kwargs.get("minlength", args[2] if len(args) > 2 else None) is None
    ):
        _counters.sync("cupy.bincount without minlength")  # CuPy reads max(x) back
    inputs = [a for a in (owner, *args) if isinstance(a, np.ndarray)]
    if where == "cupy.matmul" and len(inputs) == 2:
        _counters.launch(where, _matmul_launches(*inputs))
        return
    if kwargs.get("out") is not None or result is None:  # writes an existing array
        _counters.launch(where)
        return
    results = result if isinstance(result, tuple) else (result,)
    for r in results:
        if isinstance(r, np.generic) or (
            isinstance(r, np.ndarray) and not any(np.may_share_memory(r, a) for a in inputs)
        ):
            _counters.launch(where)
            return


def _matmul_launches(a: np.ndarray, b: np.ndarray) -> int:
    """Kernels of one ``cupy.matmul`` (cupy/_core/_routines_linalg.pyx): cuBLAS reads a
    C- or F-contiguous matrix as it is and copies any other; a product of stacks (ndim > 2)
    copies each operand to a contiguous stack of its broadcast shape and builds the device
    arrays of matrix pointers for ``gemmBatched`` (6 small kernels)."""

    def readable(x: np.ndarray) -> bool:
        return x.flags.c_contiguous or x.flags.f_contiguous

    if a.ndim <= 2 and b.ndim <= 2:
        return 1 + (not readable(a)) + (not readable(b))
    return 1 + 6 + (not readable(a) or a.ndim < 3) + (not readable(b) or b.ndim < 3)


def _wrap_callable(
    func: Callable, where: str, params: tuple[str, ...] | None = None, owner: ndarray | None = None
) -> Callable:
    def method(*args, **kwargs):
        _api.check_call(where, params, args, kwargs)
        if owner is None or owner._dev == _runtime._current:
            return call_numpy(func, args, kwargs, where)
        # On an array of another device only what launches no kernel works: a view.
        out = call_numpy(func, args, kwargs, where)
        if isinstance(out, ndarray) and np.may_share_memory(out._host, owner._host):
            out._dev = owner._dev
            return out
        raise foreign_device_error(owner._dev, where)

    method.__name__ = getattr(func, "__name__", where)
    method.__doc__ = getattr(func, "__doc__", None)
    return method


# ---------------------------------------------------------------------- operators


def _operand(x: Any) -> Any:
    if isinstance(x, ndarray):
        return x._here("cupy.ndarray operator")
    if isinstance(x, (numbers.Number, np.generic)):
        return x
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x
        raise TypeError(
            f"operand is a host numpy.ndarray {x.dtype} {x.shape}; CuPy does not mix host and "
            "device arrays (Unsupported type <class 'numpy.ndarray'>): use cupy.asarray(...)"
        )
    return NotImplemented


def _binary(op: Callable, reflected: bool = False):
    def method(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        h = self._here("cupy.ndarray operator")
        if op is np.matmul and isinstance(o, np.ndarray):
            _counters.launch("cupy.matmul", _matmul_launches(*((o, h) if reflected else (h, o))))
        else:
            _counters.launch("operator")
        return wrap(op(o, h) if reflected else op(h, o))

    return method


def _inplace(op: Callable):
    def method(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        h = self._here("cupy.ndarray operator")
        _counters.launch("operator")
        op(h, o, out=h)
        return self

    return method


def _unary(op: Callable):
    def method(self):
        _counters.launch("operator")
        return wrap(op(self._here("cupy.ndarray operator")))

    return method


_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "matmul": np.matmul,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}
for _name, _op in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(_op))
for _name, _op in {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
for _name, _op in {
    "neg": np.negative,
    "pos": np.positive,
    "abs": np.absolute,
    "invert": np.invert,
}.items():
    setattr(ndarray, f"__{_name}__", _unary(_op))


def _check_surface() -> None:
    """Every public attribute defined on the stand-in's ndarray is one CuPy's ndarray has
    (``cupy_api.NDARRAY``): an attribute real CuPy lacks must fail here as on a GPU."""
    extra = [n for n in dir(ndarray) if not n.startswith("_") and n not in _api.tables.NDARRAY]
    if extra:
        raise AssertionError(f"the stand-in's cupy.ndarray defines names CuPy lacks: {extra}")


_check_surface()
