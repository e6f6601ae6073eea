"""``cupyx`` of the stand-in: ``scatter_add``/``scatter_max``/``scatter_min``, pinned memory,
``cupyx.profiler.benchmark`` and ``cupyx.scipy.special``."""

from __future__ import annotations

import numpy as _np

from ..cupy._array import ndarray as _ndarray
from ..cupy._array import unwrap as _unwrap


def _scatter(ufunc, a, slices, value) -> None:
    if not isinstance(a, _ndarray):
        raise TypeError(f"cupyx.scatter_*: a must be a cupy.ndarray, got {type(a).__name__}")
    from ..cupy import _check_scatter

    _check_scatter(ufunc.__name__, a, slices, f"cupyx.scatter_{ufunc.__name__[:3]}")
    key = (
        _unwrap(slices, "cupyx.scatter")
        if not isinstance(slices, tuple)
        else tuple(_unwrap(s, "cupyx.scatter") for s in slices)
    )
    from .. import counters

    counters.launch("cupyx.scatter")
    ufunc.at(a._here("cupyx.scatter"), key, _unwrap(value, "cupyx.scatter"))


def scatter_add(a, slices, value) -> None:
    """``numpy.add.at`` on a device array."""
    _scatter(_np.add, a, slices, value)


def scatter_max(a, slices, value) -> None:
    _scatter(_np.maximum, a, slices, value)


def scatter_min(a, slices, value) -> None:
    _scatter(_np.minimum, a, slices, value)


def empty_pinned(shape, dtype=float, order="C") -> _np.ndarray:
    return _np.empty(shape, dtype, order)


def zeros_pinned(shape, dtype=float, order="C") -> _np.ndarray:
    return _np.zeros(shape, dtype, order)


def empty_like_pinned(a, dtype=None, order="K", subok=None, shape=None) -> _np.ndarray:
    return _np.empty_like(a, dtype, order, shape=shape)


def rsqrt(x, out=None):
    from .. import cupy

    return cupy.reciprocal(cupy.sqrt(x), out=out)


from . import profiler, scipy  # noqa: E402, F401 (submodules, as in CuPy)
