"""Factories: zeros, ones, full, arange, linspace, eye, rand, randn, *_like, from_dlpack."""

from __future__ import annotations

import numpy

from . import random
from .device import array_device
from .device import device as _device
from .ops.shape import _shape_arg
from .tensor import Tensor, _dtype

__all__ = [
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "randperm",
    "from_dlpack",
    "normal",
]

_F32 = numpy.dtype(numpy.float32)


def _make(array_fn, size, dtype, device, requires_grad, default=_F32) -> Tensor:
    """A tensor of `array_fn(device, shape, dtype)`, the arguments normalised once here."""
    dev = _device(device)
    dt = _dtype(dtype) or default
    with dev:
        t = Tensor._wrap(array_fn(dev, _shape_arg(size), dt), dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda dev, s, dt: dev.xp.zeros(s, dt), size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda dev, s, dt: dev.xp.ones(s, dt), size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda dev, s, dt: dev.xp.empty(s, dt), size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    default = numpy.dtype(numpy.int64) if isinstance(fill_value, (bool, int)) else _F32
    if isinstance(fill_value, bool):
        default = numpy.dtype(numpy.bool_)
    return _make(
        lambda dev, s, dt: dev.xp.full(s, fill_value, dt),
        (size,),
        dtype,
        device,
        requires_grad,
        default,
    )


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, (int, numpy.integer)) for v in (start, end, step))
    default = numpy.dtype(numpy.int64) if ints else _F32
    dev = _device(device)
    dt = _dtype(dtype) or default
    with dev:
        t = Tensor._wrap(dev.xp.arange(start, end, step).astype(dt), dev)
    return t.requires_grad_(True) if requires_grad else t


def linspace(
    start, end, steps: int, dtype=None, device=None, requires_grad: bool = False
) -> Tensor:
    dev = _device(device)
    dt = _dtype(dtype) or _F32
    if dt.kind == "b":
        raise TypeError("linspace: dtype bool is not supported (as in PyTorch); use a number dtype")
    with dev:
        t = Tensor._wrap(dev.xp.linspace(start, end, steps).astype(dt), dev)
    return t.requires_grad_(True) if requires_grad else t


def eye(
    n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False
) -> Tensor:
    dev = _device(device)
    with dev:
        t = Tensor._wrap(dev.xp.eye(n, m, dtype=_dtype(dtype) or _F32), dev)
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda dev, s, dt: random.uniform(s, dt, dev), size, dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda dev, s, dt: random.normal(s, dt, dev), size, dtype, device, requires_grad)


def normal(mean: float, std: float, size, dtype=None, device=None) -> Tensor:
    return _make(
        lambda dev, s, dt: random.normal(s, dt, dev, mean, std),
        (size,),
        dtype,
        device,
        False,
    )


def randint(low, high=None, size=(), dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return _make(
        lambda dev, s, dt: random.integers(low, high, s, dt, dev),
        (tuple(size),),
        dtype,
        device,
        False,
        numpy.dtype(numpy.int64),
    )


def randperm(n: int, dtype=None, device=None) -> Tensor:
    dev = _device(device)
    with dev:
        perm = dev.xp.asarray(random.permutation(n, dev)).astype(_dtype(dtype) or numpy.int64)
    return Tensor._wrap(perm, dev)


def _like(fn, x: Tensor, dtype, device, requires_grad, *args):
    return fn(
        *args,
        x.shape,
        dtype=dtype or x.dtype,
        device=device or x.device,
        requires_grad=requires_grad,
    )


def zeros_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(zeros, x, dtype, device, requires_grad)


def ones_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(ones, x, dtype, device, requires_grad)


def empty_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(empty, x, dtype, device, requires_grad)


def rand_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(rand, x, dtype, device, requires_grad)


def randn_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(randn, x, dtype, device, requires_grad)


def full_like(
    x: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False
) -> Tensor:
    return full(
        x.shape,
        fill_value,
        dtype=dtype or x.dtype,
        device=device or x.device,
        requires_grad=requires_grad,
    )


def from_dlpack(obj) -> Tensor:
    """A tensor sharing memory with any DLPack producer (PyTorch, JAX, CuPy, NumPy)."""
    if isinstance(obj, Tensor):
        return obj
    dev_type, dev_id = obj.__dlpack_device__()
    if int(dev_type) == 1:  # kDLCPU
        return Tensor._wrap(numpy.from_dlpack(obj), _device("cpu"))
    from .device import cupy

    arr = cupy().from_dlpack(obj)
    return Tensor._wrap(arr, array_device(arr))
