"""``cupyx.scipy.special`` of the stand-in: SciPy's special functions on device arrays."""

from __future__ import annotations

from typing import Any

from ...cupy._array import call_numpy


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    import scipy.special

    func = getattr(scipy.special, name)

    def function(*args, **kwargs):
        return call_numpy(func, args, kwargs, f"cupyx.scipy.special.{name}")

    function.__name__ = name
    globals()[name] = function
    return function
