"""What a piece of code would cost on a GPU, counted through the CuPy stand-in.

    from cuda_sim import counters

    with counters.count() as c:
        step()
    c.launches, c.syncs, c.h2d, c.peak_bytes, c.sync_sites

- ``launches``: device work a real CuPy would enqueue: every RawKernel call, every CuPy function,
  ufunc, operator or method that writes device memory (a fresh array, ``out=``, an in-place
  operator, ``fill``, a gather or scatter through indexing, a copy, a random draw), plus the
  kernels CuPy's own ``matmul`` adds around cuBLAS (a contiguous copy per operand cuBLAS can't
  read as it is; for a batched product the pointer arrays: 6 kernels). Views (reshape,
  transpose, basic slicing, broadcast_to) and ``cupy.empty`` launch nothing.
- ``syncs``: operations that block the host until the device has finished: reading device memory
  (``.get()``, ``cupy.asnumpy``, ``.item()``, ``.tolist()``, ``bool()``, ``int()``, ``float()``,
  ``format``, ``repr``/``str``), the routines whose output size depends on the data (boolean-mask
  indexing and assignment, ``nonzero``, ``argwhere``, ``flatnonzero``, ``unique``, ``extract``,
  ``compress``, one-argument ``where``, ``bincount`` without ``minlength``), and explicit
  synchronisation (``Device.synchronize``, ``Stream.synchronize``, ``Event.synchronize``,
  ``runtime.deviceSynchronize``). ``sync_sites`` says where each came from (the first frame
  outside the stand-in).
- ``h2d``: host-to-device copies (``cupy.array``/``cupy.asarray`` of host data or a Python
  scalar, ``ndarray.set``, a host index list or array).
- ``launch_kinds`` / ``launch_sites``: the launches by the stand-in call that made them
  (``RawKernel``, ``cupy.matmul``, ``operator``, ...), and by the op that asked for them (see
  :func:`_op`; ``python -m benchmarks.launches --ops`` prints them).
- ``peak_bytes``: the most device memory allocated inside the block that was alive at once.

Counting costs nothing when no ``count()`` block is open (one truth test per operation).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_STANDIN = (str(_HERE / "cupy"), str(_HERE / "cupyx"), str(_HERE / "counters.py"))
_LAUNCHER = (str(_HERE.parent.parent / "kernels" / "launch.py"),)


@dataclass
class Counts:
    launches: int = 0
    syncs: int = 0
    h2d: int = 0
    peak_bytes: int = 0
    live_bytes: int = 0
    sync_sites: list[str] = field(default_factory=list)
    launch_kinds: collections.Counter = field(default_factory=collections.Counter)
    launch_sites: collections.Counter = field(default_factory=collections.Counter)


_open: list[Counts] = []  # the active count() blocks, innermost last


@contextlib.contextmanager
def count():
    """Count launches, syncs, host-to-device copies and peak bytes inside the block."""
    c = Counts()
    _open.append(c)
    try:
        yield c
    finally:
        _open.remove(c)


def _site() -> str:
    """The first frame outside the stand-in: where the project asked for the operation."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_STANDIN):
        f = f.f_back
    if f is None:
        return "?"
    return f"{Path(f.f_code.co_filename).name}:{f.f_lineno} ({f.f_code.co_name})"


def _where(f) -> str:
    return f"{Path(f.f_code.co_filename).name}:{f.f_lineno} ({f.f_code.co_name})"


def _op() -> str:
    """Who asked for a launch: the nearest ``forward``/``backward`` method around the call
    (``Class.forward``: an engine Function's, or a Module's for code outside any op) and, when
    the call is deeper, the first project frame below it (``Conv2d.forward <- gpu.py:34
    (_cols)``); outside any such method, that frame alone (``autograd.py:387 (store)``). Frames
    of the stand-in and of the kernel launcher (kernels/launch.py) are skipped."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_STANDIN + _LAUNCHER):
        f = f.f_back
    first = f
    while f is not None:
        if f.f_code.co_name in ("forward", "backward") and "self" in f.f_locals:
            op = f"{type(f.f_locals['self']).__name__}.{f.f_code.co_name}"
            return op if f is first else f"{op} <- {_where(first)}"
        f = f.f_back
    return "?" if first is None else _where(first)


def launch(where: str, n: int = 1) -> None:
    if not _open:
        return
    site = _op()
    for c in _open:
        c.launches += n
        c.launch_kinds[where] += n
        c.launch_sites[site] += n


def sync(where: str) -> None:
    if not _open:
        return
    site = _site()
    for c in _open:
        c.syncs += 1
        c.sync_sites.append(f"{where} from {site}")


def h2d(where: str) -> None:
    for c in _open:
        c.h2d += 1


_tracked: set[int] = set()  # ids of the host arrays being counted


def _freed(key: int, blocks: list[Counts], nbytes: int) -> None:
    _tracked.discard(key)
    for c in blocks:
        c.live_bytes -= nbytes


def allocated(host) -> None:
    """A device array's memory, allocated now: counted until the host array dies."""
    if host.base is not None or not host.nbytes or id(host) in _tracked:
        return
    _tracked.add(id(host))
    blocks = list(_open)
    for c in blocks:
        c.live_bytes += host.nbytes
        c.peak_bytes = max(c.peak_bytes, c.live_bytes)
    weakref.finalize(host, _freed, id(host), blocks, host.nbytes)
