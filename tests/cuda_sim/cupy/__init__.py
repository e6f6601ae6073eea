"""A CuPy stand-in for tests: the slice of CuPy's API tensortape uses, on top of NumPy.

Installed as ``sys.modules["cupy"]`` by ``cuda_sim.install()`` (tests/conftest.py does it when no
real GPU is usable), so production code runs its cuda path unchanged. ``RawModule`` compiles the
``.cu`` source as host C++ through ``cuda_sim.hostbuild`` and checks every launch's arguments
against the kernel's C signature. Anything not defined here falls back to NumPy's function of the
same name, with device arrays unwrapped on the way in and wrapped on the way out.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Sequence

import numpy as _np

from .. import hostbuild as _hostbuild
from ._array import _empty, call_numpy, ndarray, unwrap

__version__ = "13.0.0+cuda_sim"
IS_CUDA_SIM = True  # lets a test tell the stand-in from real CuPy

# ---------------------------------------------------------------------- creation and transfers


def _reject_text(host: _np.ndarray) -> _np.ndarray:
    if host.dtype.kind in "OSUV":
        raise ValueError(f"Unsupported dtype {host.dtype}")
    return host


def _host_data(obj: Any) -> Any:
    """Host data from ``obj`` (device arrays, nested lists of them, host arrays, scalars)."""
    if isinstance(obj, ndarray):
        return obj._host
    if isinstance(obj, (list, tuple)):
        return [_host_data(v) for v in obj]
    return obj


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A new device array from device or host data (copies host data to the "device")."""
    host = _np.array(_host_data(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin)
    return ndarray._wrap(_reject_text(host))


def asarray(a, dtype=None, order=None, *, blocking=False):
    """``a`` itself if already a device array of ``dtype``, else a device copy."""
    if isinstance(a, ndarray):
        if dtype is None or _np.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    return array(a, dtype=dtype, order=order if order is not None else "K")


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
    return ndarray._wrap(_np.ascontiguousarray(a._host, dtype=dtype))


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
    host = unwrap(prototype, "cupy.empty_like")
    like = _np.empty_like(host, dtype=dtype, shape=shape)
    return ndarray._wrap(_empty(like.shape, like.dtype))


def get_array_module(*args):
    """``cupy`` if any argument is a device array, else ``numpy``."""
    import sys

    if any(isinstance(a, ndarray) for a in args):
        return sys.modules[__name__]
    return _np


def from_dlpack(x, *, device=None, copy=None):
    """Share the memory of a device array exported through DLPack."""
    if isinstance(x, ndarray):
        return ndarray._wrap(x._host)
    dev = x.__dlpack_device__() if hasattr(x, "__dlpack_device__") else None
    if dev is None or int(dev[0]) != 2:
        raise TypeError(
            f"cupy.from_dlpack: {type(x).__name__} lives on DLPack device {dev}, not CUDA; "
            "CuPy only imports device memory (copy host data with cupy.asarray)"
        )

    class _AsHost:  # the capsule is host memory; present it to NumPy as such
        def __dlpack__(self, **kw):
            return x.__dlpack__()

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


class ufunc:  # noqa: N801 (CuPy's name)
    """A NumPy ufunc working on device arrays, with ``at``/``reduce``/``accumulate``/``outer``."""

    def __init__(self, np_ufunc: _np.ufunc):
        self._ufunc = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.__doc__ = np_ufunc.__doc__

    def __call__(self, *args, **kwargs):
        return call_numpy(self._ufunc, args, kwargs, f"cupy.{self.name}")

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def _method(name):  # noqa: N805
        def method(self, *args, **kwargs):
            return call_numpy(getattr(self._ufunc, name), args, kwargs, f"cupy.{self.name}.{name}")

        method.__name__ = name
        return method

    at = _method("at")
    reduce = _method("reduce")
    accumulate = _method("accumulate")
    reduceat = _method("reduceat")
    outer = _method("outer")
    del _method


class _Namespace(types.ModuleType):
    """A NumPy submodule (``linalg``, ``fft``) whose functions take and give device arrays."""

    def __init__(self, name: str, np_module: types.ModuleType):
        super().__init__(name)
        self._np_module = np_module

    def __getattr__(self, name: str):
        return _lookup(self._np_module, name, f"{self.__name__}.{name}")


_NOT_PROVIDED = {
    "ElementwiseKernel": "tensortape keeps all CUDA in kernels/cuda/*.cu; use cupy.RawModule",
    "ReductionKernel": "tensortape keeps all CUDA in kernels/cuda/*.cu; use cupy.RawModule",
}
_SUBMODULES = {"cuda", "random", "testing"}
_fallback_cache: dict[str, Any] = {}


def _lookup(np_module: types.ModuleType, name: str, qualname: str) -> Any:
    if qualname not in _fallback_cache:
        _fallback_cache[qualname] = _wrap_attr(np_module, name, qualname)
    return _fallback_cache[qualname]


def _wrap_attr(np_module: types.ModuleType, name: str, qualname: str) -> Any:
    try:
        value = getattr(np_module, name)
    except AttributeError:
        raise AttributeError(f"the CuPy stand-in has no attribute {qualname!r}") from None
    if isinstance(value, _np.ufunc):
        return ufunc(value)
    if isinstance(value, types.ModuleType):
        return _Namespace(qualname, value)
    if isinstance(value, type) or not callable(value):
        return value  # dtypes (cupy.float32 is numpy.float32), constants, finfo, ...

    def function(*args, **kwargs):
        return call_numpy(value, args, kwargs, qualname)

    function.__name__ = name
    function.__qualname__ = qualname
    function.__doc__ = value.__doc__
    return function


def __getattr__(name: str) -> Any:
    if name in _NOT_PROVIDED:
        raise AttributeError(f"cupy.{name} is not in the CuPy stand-in: {_NOT_PROVIDED[name]}")
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)  # lets `from . import random` import our own submodule
    return _lookup(_np, name, f"cupy.{name}")


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

_KERNEL_DIR = Path(__file__).resolve().parents[3] / "kernels" / "cuda"
_modules: dict[tuple, _hostbuild.HostModule] = {}


def _label(code: str) -> str:
    """The path of the ``kernels/cuda/*.cu`` file holding exactly ``code``, for messages."""
    for path in sorted(_KERNEL_DIR.glob("*.cu")):
        try:
            if path.read_text() == code:
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
        name_expressions: Sequence[str] | None = None,
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

from . import cuda, random, testing  # noqa: E402, F401 (submodules, as in CuPy)
