"""A CuPy stand-in for tests: the slice of CuPy's API tensortape uses, on top of NumPy.

Installed as ``sys.modules["cupy"]`` by ``cuda_sim.install()`` (tests/conftest.py does it when no
real GPU is usable), so production code runs its cuda path unchanged. ``RawModule`` compiles the
``.cu`` source as host C++ through ``cuda_sim.hostbuild`` and checks every launch's arguments
against the kernel's C signature. Any other name that CuPy has (``cupy_api.CUPY``, generated
from CuPy 14.2.0) falls back to NumPy's function of the same name, its arguments checked against
CuPy's signature, device arrays unwrapped on the way in and wrapped on the way out; a name CuPy
lacks raises AttributeError, as on a GPU.
"""

from __future__ import annotations

import types as _types
from pathlib import Path as _Path
from typing import Any as _Any
from typing import Sequence as _Sequence

import numpy as _np

from .. import counters as _counters
from .. import hostbuild as _hostbuild
from . import _api
from ._array import _empty, ndarray
from ._array import call_numpy as _call_numpy
from ._array import unwrap as _unwrap

__version__ = _api.VERSION + "+cuda_sim"
IS_CUDA_SIM = True  # lets a test tell the stand-in from real CuPy

# ---------------------------------------------------------------------- creation and transfers


def _reject_text(host: _np.ndarray) -> _np.ndarray:
    if host.dtype.kind in "OSUV":
        raise ValueError(f"Unsupported dtype {host.dtype}")
    return host


def _host_data(obj: _Any) -> _Any:
    """Host data from ``obj`` (device arrays, nested lists of them, host arrays, scalars)."""
    if isinstance(obj, ndarray):
        return obj._here("cupy.array")
    if isinstance(obj, (list, tuple)):
        return [_host_data(v) for v in obj]
    return obj


def _holds_device_array(obj: _Any) -> bool:
    if isinstance(obj, (list, tuple)):
        return any(_holds_device_array(v) for v in obj)
    return isinstance(obj, ndarray)


def _array_from_host(obj, dtype=None, order="K", ndmin=0):
    host = _np.array(_host_data(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin)
    return ndarray._wrap(_reject_text(host))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A new device array from device or host data (copies host data to the "device")."""
    if _holds_device_array(obj):
        _counters.launch("copy")  # a device copy, or a concatenation of device arrays
    else:
        _counters.h2d("cupy.array")
    return _array_from_host(obj, dtype, order, ndmin)


def asarray(a, dtype=None, order=None, *, blocking=False):
    """``a`` itself if already a device array of ``dtype``, else a device copy."""
    if isinstance(a, ndarray):
        if dtype is None or _np.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    _counters.h2d("cupy.asarray")
    return _array_from_host(a, dtype, order if order is not None else "K")


asanyarray = asarray


def ascontiguousarray(a, dtype=None):
    """C-contiguous device array; ``a`` itself when it already is one (CuPy takes no host)."""
    if not isinstance(a, ndarray):
        raise TypeError(
            f"cupy.ascontiguousarray needs a cupy.ndarray, got {type(a).__name__} "
            "(copy host data with cupy.asarray first)"
        )
    same_dtype = dtype is None or _np.dtype(dtype) == a.dtype
    if a._host.flags.c_contiguous and same_dtype and a.ndim > 0:
        return a  # a 0-d array comes back with shape (1,), as in CuPy and NumPy
    _counters.launch("copy")
    return ndarray._wrap(_np.ascontiguousarray(a._here("cupy.ascontiguousarray"), dtype=dtype))


def take_along_axis(a, indices, axis):
    """As CuPy's (a fancy index): out-of-range indices wrap around instead of raising."""
    where = "cupy.take_along_axis"
    _api.check_call(where, _api.tables.CUPY["take_along_axis"][1], (a, indices, axis), {})
    if not isinstance(indices, ndarray) or indices.dtype.kind not in "iu":
        raise IndexError("`indices` must be an integer array")
    host, index = _unwrap(a, where), _unwrap(indices, where)
    if axis is None:
        host, axis = host.ravel(), 0
    n = host.shape[axis]
    _counters.launch(where)
    return ndarray._wrap(_np.take_along_axis(host, index % n if n else index, axis))


def asnumpy(a, stream=None, order="C", out=None, blocking=True) -> _np.ndarray:
    """Copy a device array to the host (host arrays pass through)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    if out is not None:
        out[...] = a
        return out
    return _np.asarray(a, order=order)


def empty(shape, dtype=float, order="C"):
    """Uninitialised memory: floats read as NaN until written (real device memory is garbage)."""
    return ndarray._wrap(_empty(shape, dtype, order))


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    host = prototype._host if isinstance(prototype, ndarray) else prototype  # no kernel: any device
    like = _np.empty_like(_unwrap(host, "cupy.empty_like"), dtype=dtype, shape=shape)
    return ndarray._wrap(_empty(like.shape, like.dtype))


def get_array_module(*args):
    """``cupy`` if any argument is a device array, else ``numpy``."""
    import sys

    if any(isinstance(a, ndarray) for a in args):
        return sys.modules[__name__]
    return _np


def from_dlpack(array, *, device=None, copy=None):
    """Share the memory of a device array exported through DLPack."""
    if isinstance(array, ndarray):
        return ndarray._wrap(array._host, array._dev)
    dev = array.__dlpack_device__() if hasattr(array, "__dlpack_device__") else None
    if dev is None or int(dev[0]) != 2:
        raise TypeError(
            f"cupy.from_dlpack: {type(array).__name__} lives on DLPack device {dev}, not CUDA; "
            "CuPy only imports device memory (copy host data with cupy.asarray)"
        )

    class _AsHost:  # the capsule is host memory; present it to NumPy as such
        def __dlpack__(self, **kw):
            return array.__dlpack__()

        def __dlpack_device__(self):
            return (1, 0)

    return ndarray._wrap(_np.from_dlpack(_AsHost()))


def fuse(*args, **kwargs):
    """``cupy.fuse``: the function itself (it runs on device arrays op by op)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def is_available() -> bool:
    return True


# ---------------------------------------------------------------------- ufuncs and fallback

# Which ufunc methods CuPy 13 implements (cupy/_core/_kernel.pyx, class ufunc): `reduce` and
# `accumulate` only for add and multiply, `reduceat` only for add, `at` only for ufuncs with a
# scatter op; the others raise NotImplementedError. `outer` works for all.
_UFUNC_METHODS = {
    "reduce": {"add", "multiply"},
    "accumulate": {"add", "multiply"},
    "reduceat": {"add"},
    "at": {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"},
}
_I32, _U32, _U64, _I64 = _np.int32, _np.uint32, _np.uint64, _np.int64
_F16, _F32, _F64 = _np.float16, _np.float32, _np.float64
# The dtypes each scatter op takes with an index array (atomics; cupy/_core/_routines_indexing.pyx,
# _scatter_op_single): `cupy.add.at` on int64 or bool raises TypeError on a GPU.
_SCATTER_DTYPES = {
    "add": (_I32, _F16, _F32, _F64, _U32, _U64),
    "subtract": (_I32, _U32),
    "maximum": (_I32, _F32, _F64, _U32, _U64),
    "minimum": (_I32, _F32, _F64, _U32, _U64),
    "bitwise_and": (_I32, _I64, _U32, _U64),
    "bitwise_or": (_I32, _I64, _U32, _U64),
    "bitwise_xor": (_I32, _I64, _U32, _U64),
}
# CuPy's ufunc.__call__ takes only these keywords ("Wrong arguments" TypeError otherwise).
_UFUNC_KWARGS = {"out", "dtype", "casting"}
_UFUNC_METHOD_PARAMS = {
    "reduce": ("array", "axis=", "dtype=", "out=", "keepdims="),
    "accumulate": ("array", "axis=", "dtype=", "out="),
    "reduceat": ("array", "indices", "axis=", "dtype=", "out="),
    "at": ("a", "indices", "b="),
    "outer": ("A", "B", "**kwargs"),
}


def _is_advanced(key) -> bool:
    """Whether an index key holds an index array (CuPy then scatters with atomics)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (ndarray, _np.ndarray, list)) for k in keys)


def _check_scatter(op: str, a, indices, where: str) -> None:
    """The dtype rule of CuPy's scatter ops (``ufunc.at``, ``cupyx.scatter_*``)."""
    if isinstance(a, ndarray) and _is_advanced(indices) and a.dtype.type not in _SCATTER_DTYPES[op]:
        names = ", ".join(_np.dtype(t).name for t in _SCATTER_DTYPES[op])
        raise TypeError(f"{where} only supports {names} as data type, got {a.dtype} (CuPy 13)")


class ufunc:  # noqa: N801 (CuPy's name)
    """A NumPy ufunc working on device arrays, with the methods and keywords CuPy's ufunc has."""

    def __init__(self, np_ufunc: _np.ufunc):
        self._ufunc = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.__doc__ = np_ufunc.__doc__

    def __call__(self, *args, **kwargs):
        wrong = set(kwargs) - _UFUNC_KWARGS
        if wrong:
            raise TypeError(
                f"Wrong arguments {dict((k, kwargs[k]) for k in sorted(wrong))} for "
                f"cupy.{self.name}: CuPy's ufuncs take only out=, dtype=, casting= "
                "(no where=, order=, subok=)"
            )
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for 'cupy_{self.name}'. It must be either "
                f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}."
            )
        return _call_numpy(self._ufunc, args, kwargs, f"cupy.{self.name}")

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def _method(name):  # noqa: N805
        def method(self, *args, **kwargs):
            where = f"cupy.{self.name}.{name}"
            if name in _UFUNC_METHODS and self.name not in _UFUNC_METHODS[name]:
                raise NotImplementedError(
                    f"`cupy_{self.name}.{name}` is not supported yet (CuPy 13 implements "
                    f"{name} only for {', '.join(sorted(_UFUNC_METHODS[name]))})"
                )
            _api.check_call(where, _UFUNC_METHOD_PARAMS[name], args, kwargs)
            if name == "at":
                _check_scatter(
                    self.name,
                    args[0] if args else kwargs.get("a"),
                    args[1] if len(args) > 1 else kwargs.get("indices"),
                    where,
                )
            return _call_numpy(getattr(self._ufunc, name), args, kwargs, where)

        method.__name__ = name
        return method

    at = _method("at")
    reduce = _method("reduce")
    accumulate = _method("accumulate")
    reduceat = _method("reduceat")
    outer = _method("outer")
    del _method


class _Namespace(_types.ModuleType):
    """A NumPy submodule (``linalg``, ``fft``) offering what CuPy's has, on device arrays."""

    def __init__(self, name: str, np_module: _types.ModuleType, table: dict):
        super().__init__(name)
        self._np_module, self._table = np_module, table

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _lookup(self._np_module, name, f"{self.__name__}.{name}", self._table)


_NOT_PROVIDED = {
    "ElementwiseKernel": "tensortape keeps all CUDA in kernels/cuda/*.cu; use cupy.RawModule",
    "ReductionKernel": "tensortape keeps all CUDA in kernels/cuda/*.cu; use cupy.RawModule",
}
_SUBMODULES = {"cuda", "random", "testing"}
# CuPy submodules simulated on NumPy's, with the table of what CuPy's offers.
_NAMESPACES = {
    "cupy.linalg": _api.tables.LINALG,
    "cupy.fft": _api.tables.FFT,
    "cupy.lib": {"stride_tricks": ("module",)},
    "cupy.lib.stride_tricks": _api.tables.STRIDE_TRICKS,
}
_fallback_cache: dict[str, _Any] = {}


def _lookup(np_module: _types.ModuleType, name: str, qualname: str, table: dict) -> _Any:
    if qualname not in _fallback_cache:
        _fallback_cache[qualname] = _wrap_attr(np_module, name, qualname, table)
    return _fallback_cache[qualname]


def _wrap_attr(np_module: _types.ModuleType, name: str, qualname: str, table: dict) -> _Any:
    entry = table.get(name)
    if entry is None:
        raise _api.missing(qualname, f"module {qualname.rsplit('.', 1)[0]!r}")
    try:
        value = getattr(np_module, name)
    except AttributeError:
        raise _api.not_simulated(qualname) from None
    kind = entry[0]
    if kind == "ufunc" and isinstance(value, _np.ufunc):
        return ufunc(value)
    if kind == "module":
        if qualname not in _NAMESPACES:
            raise _api.not_simulated(qualname)
        return _Namespace(qualname, value, _NAMESPACES[qualname])
    if kind == "value" or not callable(value):
        return value  # dtypes (cupy.float32 is numpy.float32), constants, finfo, ...
    params = entry[1] if kind == "function" else None

    def function(*args, **kwargs):
        _api.check_call(qualname, params, args, kwargs)
        return _call_numpy(value, args, kwargs, qualname)

    function.__name__ = name
    function.__qualname__ = qualname
    function.__doc__ = value.__doc__
    return function


def __getattr__(name: str) -> _Any:
    if name in _NOT_PROVIDED:
        raise AttributeError(f"cupy.{name} is not in the CuPy stand-in: {_NOT_PROVIDED[name]}")
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)  # lets `from . import random` import our own submodule
    return _lookup(_np, name, f"cupy.{name}", _api.tables.CUPY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_api.tables.CUPY))


# ---------------------------------------------------------------------- memory pools


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: counts nothing, frees nothing."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        pass

    def n_free_blocks(self) -> int:
        return 0

    def set_limit(self, size=None, fraction=None) -> None:
        pass

    def get_limit(self) -> int:
        return 0


_memory_pool = _MemoryPool()
_pinned_pool = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _memory_pool


def get_default_pinned_memory_pool() -> _MemoryPool:
    return _pinned_pool


# ---------------------------------------------------------------------- raw kernels

_KERNEL_DIR = _Path(__file__).resolve().parents[3] / "kernels" / "cuda"
_modules: dict[tuple, _hostbuild.HostModule] = {}


def _label(code: str) -> str:
    """The path of the ``kernels/cuda/*.cu`` file holding exactly ``code``, for messages."""
    from kernels import launch

    for path in sorted(_KERNEL_DIR.glob("*.cu")):
        try:
            if launch.source_code(path.name) == code:
                return str(path)
        except OSError:
            continue
    return "<RawModule code>"


def _host_module(code: str, options: tuple, name_expressions: tuple) -> _hostbuild.HostModule:
    key = (code, options, name_expressions)
    if key not in _modules:
        _modules[key] = _hostbuild.build(
            None, name_expressions, code=code, options=options, label=_label(code)
        )
    return _modules[key]


class RawKernel:
    """One kernel: ``kernel(grid, block, args, shared_mem=0, stream=None)``, as in CuPy."""

    def __init__(
        self, code: str | None, name: str, options: tuple = (), backend: str = "nvrtc", **kw
    ):
        if code is not None and not isinstance(code, str):
            raise TypeError(f"code must be str, got {type(code).__name__}")
        if not isinstance(options, tuple):
            raise TypeError(
                f"Argument 'options' has incorrect type (expected tuple, got "
                f"{type(options).__name__})"
            )
        self.code, self.name, self.options, self.backend = code, name, options, backend
        self.__name__ = name
        self.name_expressions: tuple | None = None
        self._function: _hostbuild.HostFunction | None = None

    @property
    def kernel(self) -> _hostbuild.HostFunction:
        if self._function is None:
            module = _host_module(self.code, self.options, self.name_expressions or ())
            if self.name not in module.signatures:
                from .cuda.driver import CUDADriverError

                raise CUDADriverError(
                    f"CUDA_ERROR_NOT_FOUND: named symbol not found: {self.name!r} (a template "
                    'kernel must be listed in name_expressions; extern "C" kernels by name)'
                )
            self._function = module.get_function(self.name)
        return self._function

    def __call__(self, grid, block, args, **kwargs) -> None:
        # A kernel runs on the current device; a pointer into another device's memory there is
        # an illegal address on a GPU (or garbage): an error here, before it runs.
        from .cuda import runtime

        for i, a in enumerate(args):
            if isinstance(a, ndarray) and a._dev != runtime._current:
                raise ValueError(
                    f"RawKernel {self.name!r}: argument {i} lives on device {a._dev} but device "
                    f"{runtime._current} is current (launch under `with array.device:`)"
                )
        _counters.launch("RawKernel")
        self.kernel(grid, block, args, **kwargs)

    def compile(self, log_stream=None) -> None:
        self.kernel  # noqa: B018 (builds)

    max_threads_per_block = 1024
    num_regs = 32
    shared_size_bytes = 0
    local_size_bytes = 0

    @property
    def attributes(self) -> dict:
        return {
            "max_threads_per_block": 1024,
            "num_regs": 32,
            "shared_size_bytes": 0,
            "local_size_bytes": 0,
            "const_size_bytes": 0,
            "ptx_version": 80,
            "binary_version": 80,
        }


class RawModule:
    """Kernels of one CUDA source, built for the host on first use (as CuPy compiles lazily)."""

    def __init__(
        self,
        *,
        code: str | None = None,
        path: str | None = None,
        options: tuple = (),
        backend: str = "nvrtc",
        translate_cucomplex: bool = False,
        enable_cooperative_groups: bool = False,
        name_expressions: _Sequence[str] | None = None,
        jitify: bool = False,
    ):
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if path is not None:
            raise NotImplementedError("the CuPy stand-in builds from source only (code=...)")
        if not isinstance(code, str):
            raise TypeError(f"code must be str, got {type(code).__name__}")
        if not isinstance(options, tuple):
            raise TypeError(
                f"Argument 'options' has incorrect type (expected tuple, got "
                f"{type(options).__name__})"
            )
        if name_expressions is not None and backend != "nvrtc":
            raise ValueError(
                "only nvrtc supports retrieving the mangled names for the given name expressions"
            )
        self.code, self.options, self.backend = code, options, backend
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)

    def compile(self, log_stream=None) -> None:
        _host_module(self.code, self.options, self.name_expressions or ())

    def get_function(self, name: str) -> RawKernel:
        if not isinstance(name, str):
            raise TypeError(
                f"Argument 'name' has incorrect type (expected str, got {type(name).__name__})"
            )
        kernel = RawKernel(self.code, name, self.options, self.backend)
        kernel.name_expressions = self.name_expressions
        kernel.kernel  # noqa: B018 (CuPy resolves the function here, so errors surface now)
        return kernel


# ---------------------------------------------------------------------- submodules

from . import _core, cuda, random, testing  # noqa: E402, F401 (submodules, as in CuPy)
