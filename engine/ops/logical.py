"""Logical and bitwise ops (no gradient): logical_and/or/xor/not, bitwise_and/or/xor/not and the
shifts, behind the operators & | ^ ~ << >> and their reflected forms (`1 & t`).

A Python int meeting an integer tensor takes the tensor's dtype, wrapping as a C cast does
(`int32_tensor | 0xFFFFFFFF` is `| -1`), as PyTorch treats Python scalars.
"""

from __future__ import annotations

import numpy

from ..device import on_device
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase


def _wrap(like: TensorBase, array) -> TensorBase:
    return like._new(array, like.device)


def _tensor_of(x, like: TensorBase) -> TensorBase:
    return x if isinstance(x, TensorBase) else like._operand(x)


@on_device
def _logical(name: str, a, b) -> TensorBase:
    ref = a if isinstance(a, TensorBase) else b
    a, b = _tensor_of(a, ref), _tensor_of(b, ref)
    if a.device != b.device:
        raise RuntimeError(
            f"{name}: expected both tensors on one device, got {a.device}, {b.device}"
        )
    return _wrap(ref, getattr(ref.xp, name)(a.array, b.array))


def logical_and(input, other) -> TensorBase:
    """True where both are non-zero (a bool tensor)."""
    return _logical("logical_and", input, other)


def logical_or(input, other) -> TensorBase:
    """True where either is non-zero (a bool tensor)."""
    return _logical("logical_or", input, other)


def logical_xor(input, other) -> TensorBase:
    """True where exactly one is non-zero (a bool tensor)."""
    return _logical("logical_xor", input, other)


@on_device
def logical_not(input: TensorBase) -> TensorBase:
    """True where the input is zero (a bool tensor)."""
    return _wrap(input, input.xp.logical_not(input.array))


def _integer_arrays(name: str, a, b):
    """Raw arrays of `a` and `b` in their common integer (or bool) dtype; a Python int takes the
    tensor's dtype (wrapping), or int64 against a bool tensor."""
    ref = a if isinstance(a, TensorBase) else b
    arrays = []
    for x in (a, b):
        if isinstance(x, TensorBase):
            if x.device != ref.device:
                raise RuntimeError(f"{name}: expected both tensors on one device, got "
                                   f"{ref.device} and {x.device}")  # fmt: skip
            arrays.append(x.array)
        elif isinstance(x, (bool, numpy.bool_)):
            arrays.append(ref.xp.asarray(x, dtype=ref.dtype if _kind(ref.dtype) != "b" else bool))
        elif isinstance(x, (int, numpy.integer)):
            dt = ref.dtype if _kind(ref.dtype) in "iu" else numpy.dtype(numpy.int64)
            # A C cast wraps out-of-range ints as PyTorch does (0xFFFFFFFF -> -1 for int32).
            host = numpy.asarray(int(x) & ((1 << 64) - 1), dtype=numpy.uint64).astype(dt)
            arrays.append(ref.xp.asarray(host))
        else:
            raise TypeError(f"{name}: expected an integer or bool tensor or Python int, got "
                            f"{type(x).__name__}")  # fmt: skip
    for arr in arrays:
        if _kind(arr.dtype) not in "iub":
            raise TypeError(f"{name}: only integer and bool tensors are supported, got {arr.dtype}")
    if arrays[0].dtype != arrays[1].dtype:
        dt = numpy.result_type(arrays[0].dtype, arrays[1].dtype)
        arrays = [x.astype(dt) for x in arrays]
    return ref, arrays


@on_device
def _bitwise(ufunc: str, name: str, a, b) -> TensorBase:
    ref, (x, y) = _integer_arrays(name, a, b)
    return _wrap(ref, getattr(ref.xp, ufunc)(x, y))


def bitwise_and(input, other) -> TensorBase:
    return _bitwise("bitwise_and", "bitwise_and", input, other)


def bitwise_or(input, other) -> TensorBase:
    return _bitwise("bitwise_or", "bitwise_or", input, other)


def bitwise_xor(input, other) -> TensorBase:
    return _bitwise("bitwise_xor", "bitwise_xor", input, other)


def bitwise_left_shift(input, other) -> TensorBase:
    return _bitwise("left_shift", "bitwise_left_shift", input, other)


def bitwise_right_shift(input, other) -> TensorBase:
    """Arithmetic shift for signed integers (the sign is kept), as PyTorch's >>."""
    return _bitwise("right_shift", "bitwise_right_shift", input, other)


@on_device
def bitwise_not(input: TensorBase) -> TensorBase:
    if _kind(input.dtype) not in "iub":
        raise TypeError(f"bitwise_not: only integer and bool tensors are supported, got "
                        f"{input.dtype}")  # fmt: skip
    return _wrap(input, input.xp.invert(input.array))


__all__ = [
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_not",
    "bitwise_left_shift",
    "bitwise_right_shift",
]
