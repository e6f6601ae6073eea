"""Independent parts of one CPU kernel call on the BLAS thread count (Winograd's chunk loops;
the images of an im2col conv's weight gradient and col2im input gradient, kernels/cpu.py).

At two BLAS threads the Winograd convs (kernels/winograd.py) gained nothing from the second
core: their 36 (25) per-position GEMMs per chunk are far below the size at which OpenBLAS
splits a GEMM, and the copies and transforms around them are NumPy calls on one thread
(benchmarks/NOTES.md item 20). Their chunks are independent, so here a call's chunks are cut
into one part per BLAS thread; part 0 runs on the calling thread, the others on a persistent
worker pool (NumPy releases the GIL in its copies and GEMMs), with BLAS pinned to one thread
meanwhile so that the parts' GEMMs do not wake OpenBLAS's own workers.

A hand-off costs ~0.1 ms on these machines (item 12; 40-270 us on item 22's, the more the
longer the worker sat idle), so the callers cut only calls of at least two chunks a part (a
chunk is ~1 MiB of tile arrays, 0.2-0.6 ms of work), or of MIN_SPLIT_BYTES (:func:`spans`).

``TENSORTAPE_KERNEL_THREADS=0`` (or :func:`set_enabled`) keeps every part on the calling thread,
for A/B measurements and tests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from kernels.switch import Switch

ENV_VAR = "TENSORTAPE_KERNEL_THREADS"
_switch = Switch(ENV_VAR, ("0", "1"), "1")
mode_from_env, mode = _switch.mode_from_env, _switch.mode
set_mode, set_enabled = _switch.set_mode, _switch.set_enabled

# A call is cut by spans() only when its arrays hold at least this many bytes: a hand-off to
# the worker costs 40-270 us on the 2-core AMD machine of benchmarks/NOTES.md item 22 (the more
# the longer the worker sat idle), and 256 KiB is ~0.1-0.3 ms of one of its calls' work.
MIN_SPLIT_BYTES = 1 << 18

_blas: list | None = None  # threadpoolctl's controllers of the BLAS libraries, found once
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _blas_libraries() -> list:
    global _blas
    if _blas is None:  # threadpoolctl is a dependency (engine.set_num_threads uses it too)
        from threadpoolctl import ThreadpoolController

        _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas


def threads() -> int:
    """Parts to cut a call into: the BLAS thread count (1 when switched off)."""
    if _switch.value == "0":
        return 1
    return max(1, min((lib.num_threads for lib in _blas_libraries()), default=1))


def run(parts: list[Callable[[], object]]) -> list:
    """Each part's result, in order; with more than one part, part 0 on the calling thread and
    the rest on worker threads, BLAS at one thread until all are done. An exception in any
    part is raised here once every part has finished."""
    if len(parts) == 1:
        return [parts[0]()]
    global _pool, _pool_size
    if _pool is None or _pool_size < len(parts) - 1:
        _pool, _pool_size = ThreadPoolExecutor(len(parts) - 1, "tensortape-kernel"), len(parts) - 1
    libs = _blas_libraries()
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        futures = [_pool.submit(p) for p in parts[1:]]
        try:
            first = parts[0]()
        finally:
            rest = [f.exception() or f.result() for f in futures]  # waits for all
        for r in rest:
            if isinstance(r, BaseException):
                raise r
        return [first, *rest]
    finally:
        for lib, n in zip(libs, before):
            lib.set_num_threads(n)


def split(items: list, n: int) -> list[list]:
    """``items`` cut into n runs of consecutive items, as even as can be (none empty when
    len(items) >= n)."""
    q, r = divmod(len(items), n)
    out, i = [], 0
    for k in range(n):
        j = i + q + (k < r)
        out.append(items[i:j])
        i = j
    return out


def spans(n: int, nbytes: int) -> list[slice]:
    """[0, n) cut into one run per thread (:func:`threads`) for a call whose arrays hold
    ``nbytes``; one run below MIN_SPLIT_BYTES, on one thread, or when n < threads."""
    # The size first: below it no further call, so a small conv's kernel stays as few frames
    # deep as it was (tests/benchmarks/test_call_depth.py).
    if nbytes < MIN_SPLIT_BYTES:
        return [slice(0, n)]
    t = threads()
    if t == 1 or n < t:
        return [slice(0, n)]
    return [slice(r.start, r.stop) for r in split(range(n), t)]

