"""``cupy._core._routines_linalg``'s compute-type switch, as CuPy 14's Cython
(cupy/_core/_routines_linalg.pyx): one compute type per float16/float32/float64, chosen lazily
(``CUPY_TF32=1`` makes float32's TF32), TF32/BF16 refused below compute capability 8.0 with a
warning. The stand-in's matmul does not model TF32 rounding (it stays float32-exact)."""

from __future__ import annotations

import os
import warnings

import numpy

from ..cuda import Device

COMPUTE_TYPE_TBD = 0
COMPUTE_TYPE_DEFAULT = 1
COMPUTE_TYPE_PEDANTIC = 2
COMPUTE_TYPE_FP16 = 3
COMPUTE_TYPE_FP32 = 4
COMPUTE_TYPE_FP64 = 5
COMPUTE_TYPE_BF16 = 6
COMPUTE_TYPE_TF32 = 7

_compute_types = [COMPUTE_TYPE_TBD, COMPUTE_TYPE_TBD, COMPUTE_TYPE_TBD]


def to_compute_type_index(dtype) -> int:
    char = numpy.dtype(dtype).char
    if char == "e":
        return 0
    if char in "fF":
        return 1
    if char in "dD":
        return 2
    raise TypeError(f"dtype is not supported: {dtype}")


def set_compute_type(dtype, compute_type) -> None:
    if compute_type in (0, 1, 2, 3, 4, 5):
        _compute_types[to_compute_type_index(dtype)] = compute_type
    elif compute_type in (COMPUTE_TYPE_BF16, COMPUTE_TYPE_TF32):
        if int(Device().compute_capability) >= 80:
            _compute_types[to_compute_type_index(dtype)] = compute_type
        else:
            warnings.warn(
                "COMPUTE_TYPE_BF16 and COMPUTE_TYPE_TF32 are only available on GPUs with compute "
                "capability 8.0 or higher. COMPUTE_TYPE_DEFAULT will be used instead.",
                stacklevel=2,
            )
            _compute_types[to_compute_type_index(dtype)] = COMPUTE_TYPE_DEFAULT
    else:
        raise ValueError(f"Unknown compute type: {compute_type}")


def get_compute_type(dtype) -> int:
    index = to_compute_type_index(dtype)
    if _compute_types[index] == COMPUTE_TYPE_TBD:
        compute_type = COMPUTE_TYPE_DEFAULT
        if numpy.dtype(dtype).char in "fF" and int(os.getenv("CUPY_TF32", "0")) > 0:
            compute_type = COMPUTE_TYPE_TF32
        set_compute_type(dtype, compute_type)
    return _compute_types[index]
