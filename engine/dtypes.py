"""The engine's dtypes beyond NumPy's own: bfloat16 (from `ml_dtypes`, the NumPy extension JAX
and CuPy 14 use) and the one test of "is this a float dtype" that knows about it.

NumPy gives `ml_dtypes.bfloat16` the kind "V" (a user dtype), so `dtype.kind in "fc"` is false
for it; every float check of the engine asks `kind(dtype)` instead.
"""

from __future__ import annotations

import ml_dtypes
import numpy

__all__ = [
    "BFLOAT16", "FLOAT16", "LOW_PRECISION", "as_dtype", "kind", "is_float", "is_low_precision"
]  # fmt: skip

BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)
FLOAT16 = numpy.dtype(numpy.float16)
LOW_PRECISION = (FLOAT16, BFLOAT16)

#: The dtype names the engine accepts (PyTorch's, with its aliases).
_DTYPES = {
    "float16": numpy.float16,
    "bfloat16": BFLOAT16,
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


def as_dtype(dtype) -> numpy.dtype | None:
    """A dtype given by name ("bfloat16", "half", ...), NumPy dtype or type; None stays None."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}")
        return numpy.dtype(_DTYPES[dtype])
    return numpy.dtype(dtype)


def kind(dtype) -> str:
    """`dtype.kind`, with "f" for bfloat16."""
    dtype = numpy.dtype(dtype)
    return "f" if dtype == BFLOAT16 else dtype.kind


def is_float(dtype) -> bool:
    return kind(dtype) in "fc"


def is_low_precision(dtype) -> bool:
    """float16 or bfloat16: the dtypes whose products the engine accumulates in float32."""
    return numpy.dtype(dtype) in LOW_PRECISION
