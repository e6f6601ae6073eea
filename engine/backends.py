"""`engine.backends.cuda.matmul.allow_tf32`: PyTorch's switch (and default, False) for TF32
tensor cores in float32 GEMMs on cuda.

TF32 keeps float32's range (8-bit exponent) but rounds the GEMM inputs to a 10-bit mantissa
(float16's precision) and accumulates in float32: on A100/H100 float32 matmuls and the conv
GEMMs run ~8x faster, with a relative error per product of ~1e-3 instead of ~1e-7 — fine for
training most networks, not for numerics that need float32's digits (solvers, gradient checks).

It sets CuPy's cuBLAS compute type for float32 (`cupy._core.set_compute_type`, the switch
`CUPY_TF32=1` sets at CuPy's start): every `cupy.matmul` of the engine uses it, the conv and
linear GEMMs included. cuda only (NumPy has no TF32; on the cpu the flag changes nothing, as
PyTorch's). Without a usable CuPy the value is kept and applied by no one: there is no cuda GEMM.
"""

from __future__ import annotations

import importlib

import numpy

__all__ = ["cuda"]


def _linalg():
    """CuPy's `cupy._core._routines_linalg` (its compute-type switch), or None without a GPU."""
    from .device import cuda as _cuda_device

    if not _cuda_device.is_available():
        return None
    return importlib.import_module("cupy._core._routines_linalg")


class _MatmulBackend:
    """`engine.backends.cuda.matmul`."""

    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        lin = _linalg()
        if lin is None:
            return self._allow_tf32
        return lin.get_compute_type(numpy.float32) == lin.COMPUTE_TYPE_TF32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"allow_tf32 must be a bool, got {value!r}")
        self._allow_tf32 = value
        lin = _linalg()
        if lin is not None:
            mode = lin.COMPUTE_TYPE_TF32 if value else lin.COMPUTE_TYPE_DEFAULT
            lin.set_compute_type(numpy.float32, mode)


class _CudaBackend:
    """`engine.backends.cuda`."""

    def __init__(self):
        self.matmul = _MatmulBackend()


cuda = _CudaBackend()
