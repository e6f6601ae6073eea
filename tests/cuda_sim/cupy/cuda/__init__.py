"""``cupy.cuda`` of the stand-in: two simulated devices, streams and events timed on the host."""

from __future__ import annotations

import time as _time

from ... import counters as _counters
from . import compiler, driver, runtime
from . import nccl as _nccl  # noqa: F401 (in sys.modules for `from cupy.cuda import nccl`)

del nccl  # noqa: F821 (bound by the import above; as in CuPy, no attribute until imported)

__all__ = [
    "Device",
    "Stream",
    "Event",
    "get_current_stream",
    "get_elapsed_time",
    "is_available",
    "runtime",
    "driver",
    "compiler",
    "MemoryPool",
    "set_allocator",
]


def is_available() -> bool:
    return True


class Device:
    """``cupy.cuda.Device(i)``: a context manager making device ``i`` current."""

    def __init__(self, device=None):
        self.id = runtime.getDevice() if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise runtime.CUDARuntimeError(
                f"cudaErrorInvalidDevice: invalid device ordinal {self.id}"
            )
        self._previous: list[int] = []

    def __enter__(self) -> "Device":
        self._previous.append(runtime.getDevice())
        runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc) -> None:
        runtime.setDevice(self._previous.pop())

    def use(self) -> None:
        runtime.setDevice(self.id)

    def synchronize(self) -> None:
        _counters.sync("cupy.cuda.Device.synchronize")

    @property
    def compute_capability(self) -> str:
        return "80"

    @property
    def mem_info(self) -> tuple[int, int]:
        return runtime.memGetInfo()

    def __int__(self) -> int:
        return self.id

    def __index__(self) -> int:
        return self.id

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Stream:
    """A stream; work runs synchronously on the host, so every method is immediate."""

    null: "Stream"

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0):
        self.ptr = 0 if null else id(self)
        self._previous: list[Stream] = []

    def synchronize(self) -> None:
        _counters.sync("cupy.cuda.Stream.synchronize")

    def use(self) -> "Stream":
        global _current_stream
        _current_stream = self
        return self

    def __enter__(self) -> "Stream":
        self._previous.append(get_current_stream())
        return self.use()

    def __exit__(self, *exc) -> None:
        self._previous.pop().use()

    @property
    def done(self) -> bool:
        return True

    def record(self, event: "Event | None" = None) -> "Event":
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event: "Event") -> None:
        pass


Stream.null = Stream(null=True)
_current_stream = Stream.null


def get_current_stream(device_id: int = -1) -> Stream:
    return _current_stream


class Event:
    """An event recording the host clock (kernels run synchronously, so this is their time)."""

    def __init__(
        self, block: bool = False, disable_timing: bool = False, interprocess: bool = False
    ):
        self.disable_timing = disable_timing
        self._time: float | None = None

    def record(self, stream: Stream | None = None) -> None:
        self._time = _time.perf_counter()

    def synchronize(self) -> None:
        _counters.sync("cupy.cuda.Event.synchronize")

    @property
    def done(self) -> bool:
        return True


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    """Milliseconds between two recorded events."""
    if start_event._time is None or end_event._time is None:
        raise runtime.CUDARuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
    return (end_event._time - start_event._time) * 1e3


class MemoryPool:
    def __init__(self, allocator=None):
        pass

    def malloc(self, size: int):
        raise NotImplementedError("the CuPy stand-in has no raw allocations")

    used_bytes = total_bytes = free_bytes = n_free_blocks = staticmethod(lambda: 0)

    def free_all_blocks(self, stream=None) -> None:
        pass


def set_allocator(allocator=None) -> None:
    pass
