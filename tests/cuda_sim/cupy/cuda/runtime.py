"""``cupy.cuda.runtime`` of the stand-in: two devices, so CI runs ``cuda:1`` (arrays remember
theirs; work on another device than the current one fails, as in CuPy without peer access)."""

from __future__ import annotations

import os

is_hip = False
# Devices per machine: two, so CI runs cuda:1 (tests/engine/test_multi_device.py);
# TENSORTAPE_SIM_DEVICES=N models N (the distributed tests give each rank its own device).
_device_count = int(os.environ.get("TENSORTAPE_SIM_DEVICES", "2"))
_current = 0


class CUDARuntimeError(RuntimeError):
    """As ``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


def getDeviceCount() -> int:  # noqa: N802 (CuPy's names)
    return _device_count


def getDevice() -> int:  # noqa: N802
    return _current


def setDevice(device: int) -> None:  # noqa: N802
    global _current
    if not 0 <= int(device) < _device_count:
        raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {device}")
    _current = int(device)


def deviceSynchronize() -> None:  # noqa: N802
    from ... import counters

    counters.sync("cupy.cuda.runtime.deviceSynchronize")


def runtimeGetVersion() -> int:  # noqa: N802
    return 13000


def driverGetVersion() -> int:  # noqa: N802
    return 13000


def memGetInfo() -> tuple[int, int]:  # noqa: N802
    return (16 << 30, 16 << 30)


def getDeviceProperties(device: int) -> dict:  # noqa: N802
    setDevice(device)  # validates the ordinal
    setDevice(_current)
    return {
        "name": b"CuPy stand-in (NumPy + host-built kernels)",
        "totalGlobalMem": 16 << 30,
        "major": 8,
        "minor": 0,
        "multiProcessorCount": 1,
        "maxThreadsPerBlock": 1024,
        "warpSize": 32,
    }
