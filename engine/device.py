"""Devices: where a tensor's array lives, and which array module (`xp`) computes on it.

CuPy is optional and imported lazily, only through `cupy()`, so `import engine` works without it
and tests can put a CuPy stand-in into `sys.modules` before the first CUDA call.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

import numpy

__all__ = ["Device", "device", "cupy", "cuda"]


def cupy():
    """The CuPy module (imported on first use)."""
    return importlib.import_module("cupy")


class Device:
    """A device: `Device("cpu")`, `Device("cuda")`, `Device("cuda:1")`.

    Compares equal to its string form, so `x.device == "cpu"` works as in PyTorch.
    """

    __slots__ = ("type", "index", "_xp", "_runtime", "_previous")

    def __init__(self, spec: str | Device = "cpu", index: int | None = None):
        if isinstance(spec, Device):
            spec, index = spec.type, spec.index
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"bad device index in {spec!r}")
            index = int(idx)
        if kind == "cuda" and index is None:
            index = 0
        self.type = kind
        self.index = index if kind == "cuda" else None
        self._xp = numpy if kind == "cpu" else None
        self._runtime = None
        self._previous: list = []

    @property
    def xp(self):
        """The array module computing on this device: numpy or cupy (looked up once per device:
        every op reads it, and `cuda.reset()` drops the cached cuda devices when tests swap
        CuPy implementations)."""
        xp = self._xp
        if xp is None:
            xp = self._xp = cupy()
        return xp

    def activate(self) -> int | None:
        """Make this CUDA device the current one for the work that follows; returns the index
        to hand to `restore` afterwards, or None when it already was current (one cheap
        `cudaGetDevice`). CuPy runs kernels and allocates on the current device, whatever
        device the arrays are on, so every op on `cuda:1` needs this."""
        rt = self._runtime
        if rt is None:
            rt = self._runtime = self.xp.cuda.runtime
        previous = rt.getDevice()
        if previous == self.index:
            return None
        rt.setDevice(self.index)
        return previous

    def restore(self, previous: int | None) -> None:
        """Undo `activate` (a no-op for None)."""
        if previous is not None:
            self._runtime.setDevice(previous)

    def __enter__(self) -> Device:
        """`with dev:` runs the block with `dev` current (nothing to do for the cpu)."""
        self._previous.append(self.activate() if self.index is not None else None)
        return self

    def __exit__(self, *exc) -> None:
        self.restore(self._previous.pop())

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + (
            ")" if self.index is None else f", index={self.index})"
        )

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except ValueError:
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        # By name: the cached `_xp` module cannot be pickled or deep-copied (copy.deepcopy(model)).
        return (Device, (str(self),))


def on_device(fn: Callable) -> Callable:
    """Run `fn` with the device of its first tensor argument current.

    For the ops that work on raw arrays outside a `Function` (comparisons, in-place updates,
    constant-output ops, losses' helpers): `Function.__call__` does this for every recorded op.
    Free on the cpu and when the device already is current (one `cudaGetDevice`).
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        for a in args:
            dev = getattr(a, "_device", None)
            if dev is not None:
                if dev.index is None:
                    break
                previous = dev.activate()
                try:
                    return fn(*args, **kwargs)
                finally:
                    dev.restore(previous)
        return fn(*args, **kwargs)

    return run


CPU = Device("cpu")
_cache: dict[Any, Device] = {None: CPU, "cpu": CPU}


def device(spec: str | Device | None = None) -> Device:
    """Normalise a device spec; asking for CUDA without a usable GPU raises a clear error."""
    if isinstance(spec, Device):
        return spec
    dev = _cache.get(spec)
    if dev is None:
        dev = Device(spec)
        if dev.type == "cuda":
            cuda.require(dev.index)
        _cache[spec] = dev
    return dev


MIN_CUPY = (14, 0)  # the extras' floor: CUDA libraries as wheels, RawModule disk cache
_INSTALL = "pip install 'tensortape[cuda12]' (or [cuda13] for a CUDA 13 driver)"


def _cupy_version(version: str) -> tuple[int, int]:
    major, minor = (version.split("+")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def unavailable_reason() -> str:
    """Why CUDA is not usable here (one line), or "" when CuPy >= 14 finds a GPU; not cached."""
    try:
        cp = cupy()
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); {_INSTALL}"
    if _cupy_version(cp.__version__) < MIN_CUPY:
        return f"CuPy {cp.__version__} is older than {'.'.join(map(str, MIN_CUPY))}; {_INSTALL}"
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no GPU"
    except Exception as exc:  # cudaErrorInsufficientDriver, cudaErrorNoDevice, ...
        return f"CuPy finds no usable GPU: {type(exc).__name__}: {exc}".splitlines()[0]
    return ""


class _Cuda:
    """`engine.cuda`: availability of CUDA through CuPy."""

    _available: bool | None = None
    _why: str = ""

    def is_available(self) -> bool:
        """True when CuPy >= 14 imports *and* a GPU answers (CuPy imports without a driver)."""
        if self._available is None:
            self._why = unavailable_reason()
            self._available = not self._why
        return self._available

    def device_count(self) -> int:
        return cupy().cuda.runtime.getDeviceCount() if self.is_available() else 0

    def require(self, index: int = 0) -> None:
        if not self.is_available():
            raise RuntimeError(
                f"CUDA device requested but not available: {self._why} (CUDA needs CuPy on a "
                "machine with an NVIDIA GPU and driver)"
            )
        count = self.device_count()
        if index >= count:
            raise RuntimeError(f"CUDA device cuda:{index} requested but only {count} present")

    def reset(self) -> None:
        """Forget the cached availability (tests swap CuPy implementations)."""
        self._available, self._why = None, ""
        for key in [k for k, d in _cache.items() if d.type == "cuda"]:
            del _cache[key]

    def synchronize(self) -> None:
        if self.is_available():
            cupy().cuda.Device().synchronize()


cuda = _Cuda()


def array_device(array) -> Device:
    """The device of a raw array (numpy -> cpu, anything else is a CuPy array)."""
    if isinstance(array, numpy.ndarray) or numpy.isscalar(array):
        return CPU
    return device(f"cuda:{array.device.id}")


# Checks of device data deferred to the next host read ------------------------------------
# Validating data that lives on a GPU (nll_loss's class indices, an integer division's
# divisor) would make the host wait for the device at every call: a sync per training step.
# On cuda the check runs as a device reduction to a 0-d boolean instead, and the flag is read
# with the next read of device data (`Tensor.numpy()`, so `.item()`, `float()`, the Trainer's
# loss reads at log points), where the host waits anyway; the error names the op as it would
# at the call. PyTorch's CUDA kernels likewise report a bad index asynchronously.
_deferred: list[tuple[Any, Callable[[], Exception]]] = []
_DEFERRED_MAX = 1024  # a loop that never reads device data still hears within this many checks


def check_later(bad, error: Callable[[], Exception]) -> None:
    """Raise `error()` if the 0-d `bad` (a boolean, or a number: nonzero is bad) is true: at
    once for a host array, at the next `raise_deferred()` for a device one (no sync now)."""
    if isinstance(bad, (numpy.ndarray, numpy.generic, bool)):
        if bool(bad):
            raise error()
        return
    _deferred.append((bad, error))
    if len(_deferred) >= _DEFERRED_MAX:
        raise_deferred()


def raise_deferred() -> None:
    """Read the pending device checks (one small copy per device) and raise the first failed
    one's error; called before device data is read back to the host."""
    if not _deferred:
        return
    pending = _deferred[:]
    _deferred.clear()
    cp = cupy()
    by_device: dict[int, list] = {}
    for k, (bad, _) in enumerate(pending):
        by_device.setdefault(bad.device.id, []).append(k)
    failed = []
    for index, ks in by_device.items():
        with cp.cuda.Device(index):
            flags = cp.stack([pending[k][0].reshape(()) for k in ks]).get()
        failed += [k for k, f in zip(ks, flags, strict=True) if f]
    if failed:
        raise pending[min(failed)][1]()
