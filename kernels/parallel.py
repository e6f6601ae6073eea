"""Independent parts of one CPU kernel call on the BLAS thread count (Winograd's chunk loops;
the images of an im2col conv's weight gradient and col2im input gradient, kernels/cpu.py; the
batch spans of the big elementwise ops of engine/ops, :func:`each_span`).

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

# each_span cuts only arrays of at least this many bytes. Measured inside the DCGAN step at two
# threads (benchmarks/NOTES.md item 26), an elementwise call on 3.2 MB (64x64x14x14 float32)
# went 0.44 -> 0.35 ms a call cut in two, one on 1.6 MB (64x128x7x7) 0.21 -> 0.21: the hand-off
# (~25 us to start the worker, ~60 us for the caller to wake when the worker ends last) eats
# what a second core saves on half of 1.6 MB.
EACH_SPAN_MIN_BYTES = 1 << 21

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


def _workers(n: int) -> ThreadPoolExecutor:
    """The persistent pool, grown to at least n worker threads."""
    global _pool, _pool_size
    if _pool is None or _pool_size < n:
        _pool, _pool_size = ThreadPoolExecutor(n, "tensortape-kernel"), n
    return _pool


def run(parts: list[Callable[[], object]]) -> list:
    """Each part's result, in order; with more than one part, part 0 on the calling thread and
    the rest on worker threads, BLAS at one thread until all are done. An exception in any
    part is raised here once every part has finished."""
    if len(parts) == 1:
        return [parts[0]()]
    pool = _workers(len(parts) - 1)
    libs = _blas_libraries()
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        futures = [pool.submit(p) for p in parts[1:]]
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


def each_span(part: Callable[[slice], object], n: int, nbytes: int) -> None:
    """``part(span)`` for the spans of [0, n) that :func:`spans` cuts for ``nbytes`` (one below
    EACH_SPAN_MIN_BYTES), span 0 on the calling thread and the others on the pool: an
    elementwise op's whole sequence of NumPy calls on each span of its arrays' leading axis
    (the CPU ops of engine/ops that run on the BLAS thread count), one hand-off a call. Each
    part writes only its own span of the outputs, so the result is bit for bit one thread's.
    Unlike :func:`run`, BLAS is left as it is (the parts make no BLAS calls; pinning and
    restoring it cost ~30 us a call). An exception in any part is raised once every part has
    finished."""
    parts = spans(n, nbytes) if nbytes >= EACH_SPAN_MIN_BYTES else [slice(0, n)]
    if len(parts) == 1:
        part(parts[0])
        return
    pool = _workers(len(parts) - 1)
    futures = [pool.submit(part, s) for s in parts[1:]]
    try:
        part(parts[0])
    finally:
        errors = [f.exception() for f in futures]  # waits for all
    for e in errors:
        if e is not None:
            raise e
