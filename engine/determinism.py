"""`engine.use_deterministic_algorithms`: PyTorch's switch for bit-identical reruns on a GPU.

On cuda, the scatter-adds behind the gradients of advanced indexing (`x[idx]`, `embedding`,
reflect/replicate/circular padding, nearest interpolation) and `scatter_add`/`index_add`/
`scatter_reduce` use CuPy's `add.at`, whose atomics add a repeated index's values in a
different order on each run. With the switch on they sort the values by target and sum each
target's run in order instead (kernels/scatter_gpu.py): slower, the same bits every run. The
cpu path is deterministic either way (NumPy's add.at adds in order).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy

__all__ = ["use_deterministic_algorithms", "are_deterministic_algorithms_enabled", "add_at"]

_enabled = False
_warn_only = False


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Run deterministic versions of the ops (PyTorch's name and arguments): an op without one
    (a float16 scatter-add on cuda) raises RuntimeError, or warns with `warn_only=True`."""
    global _enabled, _warn_only
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms expects a bool, got {mode!r}")
    _enabled, _warn_only = mode, bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    return _enabled


def add_at(xp: Any, out: Any, index: Any, values: Any) -> None:
    """`xp.add.at(out, index, values)`; in deterministic mode on cuda the ordered version
    (float32/float64; integer sums are exact in any order)."""
    if _enabled and xp is not numpy and out.dtype.kind in "fc":
        if out.dtype.name in ("float32", "float64"):
            from kernels import scatter_gpu  # noqa: PLC0415 (CuPy only on cuda)

            scatter_gpu.add_at(out, index, values)
            return
        message = (
            f"a scatter-add (index backward, scatter_add, index_add) on cuda in {out.dtype.name} "
            "has no deterministic implementation (float32 and float64 do); "
            "engine.use_deterministic_algorithms(True) is set"
        )
        if not _warn_only:
            raise RuntimeError(message)
        warnings.warn(message, stacklevel=3)
    xp.add.at(out, index, values)
