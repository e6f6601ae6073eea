"""The tape's thread-local modes: grad mode (`no_grad`, `enable_grad`, `set_grad_enabled`),
anomaly detection and whether a backward walk runs (autocast casts nothing inside one). The lowest
layer of the engine's tape: it imports nothing of the project, so the tensor record and the tape
above it can both ask whether to record."""

from __future__ import annotations

import contextlib
import threading

__all__ = [
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "detect_anomaly",
]


class _Mode(threading.local):
    grad_enabled = True
    anomaly = False
    callbacks: list | None = None  # autograd.queue_callback's list while a backward walk runs
    backward_depth = 0  # backward walks running (nested with create_graph): autocast casts none


_mode = _Mode()


class backward_walk:  # noqa: N801
    """Entered by the tape around a backward walk: `engine.autocast` casts nothing inside it
    (PyTorch's backward is not autocast either: gradient ops run in their forward's dtypes)."""

    def __enter__(self) -> None:
        _mode.backward_depth += 1

    def __exit__(self, *exc) -> None:
        _mode.backward_depth -= 1


def is_grad_enabled() -> bool:
    return _mode.grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager / decorator that sets grad mode on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev: list[bool] = []

    def __enter__(self):
        self.prev.append(_mode.grad_enabled)
        _mode.grad_enabled = self.mode

    def __exit__(self, *exc):
        _mode.grad_enabled = self.prev.pop()
        return False


class _FixedMode(set_grad_enabled):
    """A grad mode usable as `with m():`, `@m()` and bare `@m` (as PyTorch allows)."""

    _enabled = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        if func is not None:  # bare decorator: `@engine.no_grad`
            self.__init__()
            return self(func)
        return self

    def __init__(self, func=None):
        super().__init__(self._enabled)


class no_grad(_FixedMode):
    """`with engine.no_grad():` (or `@engine.no_grad()` / `@engine.no_grad`): record no graph."""

    _enabled = False


class enable_grad(_FixedMode):
    """`with engine.enable_grad():` record the graph even inside `no_grad`."""

    _enabled = True


class detect_anomaly(contextlib.ContextDecorator):
    """Inside this context the first op whose forward or backward yields NaN/Inf raises."""

    def __enter__(self):
        self.prev = _mode.anomaly
        _mode.anomaly = True

    def __exit__(self, *exc):
        _mode.anomaly = self.prev
        return False
