"""The engine's random generators: one per device, all seeded by `engine.manual_seed(n)`.

Every random draw of the engine (rand, randn, dropout masks, init, shuffling) goes through
`generator(device)`, so one seed reproduces a run and a checkpoint can save and restore the state.
"""

from __future__ import annotations

import numpy

from .device import CPU, Device, cupy
from .dtypes import kind as _kind

__all__ = ["manual_seed", "seed", "generator", "get_rng_state", "set_rng_state", "initial_seed"]

_seed = 0
_cpu = numpy.random.default_rng(_seed)
_cuda: dict[int, object] = {}


def manual_seed(n: int) -> None:
    """Seed every generator of the engine, on every device."""
    global _seed, _cpu
    _seed = int(n)
    _cpu = numpy.random.default_rng(_seed)
    _cuda.clear()
    _streams.clear()


def seed() -> int:
    """Seed from fresh entropy; returns the new seed."""
    n = int(numpy.random.SeedSequence().entropy % (2**63))
    manual_seed(n)
    return n


def initial_seed() -> int:
    return _seed


def generator(device: Device = CPU):
    """The generator that draws for `device` (numpy's on cpu, CuPy's on cuda)."""
    if device.type == "cpu":
        return _cpu
    gen = _cuda.get(device.index)
    if gen is None:
        cp = cupy()
        with cp.cuda.Device(device.index):
            gen = cp.random.default_rng(_seed + 1 + device.index)
        _cuda[device.index] = gen
    return gen


# The kernels' own counter-based random streams (the fused cuda dropout): per device, [key,
# next position], the key hashed once per seed (a SeedSequence costs ~7 us, a dropout's whole
# host budget); restarted with the generators (manual_seed, set_rng_state), as CuPy's are.
_streams: dict[int, list] = {}


def kernel_stream(device: Device, n: int) -> tuple[int, int]:
    """(key, offset) of n fresh numbers of `device`'s counter-based stream: the key from the
    seed and the device, the offset advanced by n on the host (no device work, no sync)."""
    index = device.index or 0
    stream = _streams.get(index)
    if stream is None:
        words = numpy.random.SeedSequence([_seed % 2**63, 7919, index]).generate_state(2)
        stream = _streams[index] = [int(words[0]) | int(words[1]) << 32, 0]
    offset = stream[1]
    stream[1] = offset + n
    return stream[0], offset


def get_rng_state() -> dict:
    """A JSON-able snapshot of the cpu generator (and the seed the cuda ones derive from)."""
    return {"seed": _seed, "cpu": _cpu.bit_generator.state}


def set_rng_state(state: dict) -> None:
    global _seed
    _seed = int(state["seed"])
    _cpu.bit_generator.state = state["cpu"]
    _cuda.clear()
    _streams.clear()


def _float(dtype) -> tuple[numpy.dtype, numpy.dtype]:
    """(the float dtype to return, the dtype to draw in: float16 draws in float32)."""
    dtype = numpy.dtype(dtype)
    dt = dtype if _kind(dtype) == "f" else numpy.dtype(numpy.float32)
    return dt, dt if dt in (numpy.float32, numpy.float64) else numpy.dtype(numpy.float32)


def uniform(shape, dtype, device: Device, low: float = 0.0, high: float = 1.0):
    """Raw array of uniform draws in [low, high)."""
    dt, draw_dt = _float(dtype)
    with device:  # a generator draws on the current device: make it the generator's
        a = generator(device).random(shape, dtype=draw_dt)
        if low != 0.0 or high != 1.0:
            a = a * (high - low) + low
        return a.astype(dt, copy=False)


def normal(shape, dtype, device: Device, mean: float = 0.0, std: float = 1.0):
    """Raw array of normal draws."""
    dt, draw_dt = _float(dtype)
    with device:
        a = generator(device).standard_normal(shape, dtype=draw_dt)
        if std != 1.0:
            a = a * std
        if mean != 0.0:
            a = a + mean
        return a.astype(dt, copy=False)


def integers(low: int, high: int, shape, dtype, device: Device):
    with device:
        return generator(device).integers(low, high, size=shape).astype(dtype, copy=False)


def permutation(n: int, device: Device = CPU):
    if device.type == "cpu":
        return _cpu.permutation(n)
    # cupy.random.Generator has no permutation: argsort of uniform draws is one.
    with device:
        return generator(device).random(n).argsort()
