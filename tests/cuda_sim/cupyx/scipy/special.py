"""``cupyx.scipy.special`` of the stand-in: SciPy's special functions on device arrays."""

from __future__ import annotations

from typing import Any

from ...cupy import _api
from ...cupy._array import call_numpy


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _api.tables.CUPYX_SCIPY_SPECIAL:
        raise _api.missing(f"cupyx.scipy.special.{name}", "module 'cupyx.scipy.special'")
    import scipy.special

    try:
        func = getattr(scipy.special, name)
    except AttributeError:
        raise _api.not_simulated(f"cupyx.scipy.special.{name}") from None

    def function(*args, **kwargs):
        return call_numpy(func, args, kwargs, f"cupyx.scipy.special.{name}")

    function.__name__ = name
    globals()[name] = function
    return function
