"""Host memory policy: keep freed activation memory in the process for the next step.

A training step allocates and frees the same activations every step. Left alone, glibc's
malloc serves blocks above its mmap threshold (128 KiB until it adapts) with fresh mappings and
hands freed heap back to the OS, so every step page-faults its activations in again: measured
on the DCGAN benchmark, ~15,000 minor faults and ~50 ms of kernel time in a ~300 ms CPU step
(benchmarks/NOTES.md, item 10). Caching allocators (PyTorch's and CuPy's on the GPU, MXNet's
on the CPU) keep freed blocks for reuse; on the CPU the C library can do that for us:
`configure_from_env()` (or `keep_freed_host_memory(mib)`), on Linux with glibc, asks malloc to

- serve blocks up to 32 MiB (glibc's maximum) from the heap instead of fresh mappings, and
- hand free heap back to the OS only when more than ``TENSORTAPE_HOST_CACHE_MB`` MiB
  (default 1024) of it sits unused at the top.

The process then keeps the memory its largest step needed (it would fault it in again next
step anyway). ``TENSORTAPE_HOST_CACHE_MB=0`` leaves malloc's defaults untouched;
`release_host_memory()` gives the cached memory back (after training, before a fork).
The setting is process-wide (other libraries in the process allocate the same way), so a library
import never applies it: the `tensortape` command and the benchmarks call `configure_from_env()`
at start, `tensortape launch` passes it to its ranks as malloc's environment variables
(`malloc_env`), and a training script of your own calls it once, before its first step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV_VAR = "TENSORTAPE_HOST_CACHE_MB"
DEFAULT_CACHE_MIB = 1024
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's upper limit for M_MMAP_THRESHOLD (64-bit)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied_mib: int | None = None


def _glibc():
    """glibc's handle, or None elsewhere (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for name in ("gnu_get_libc_version", "mallopt", "malloc_trim"):  # glibc's own names
            getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def cache_mib_from_env() -> int:
    """``TENSORTAPE_HOST_CACHE_MB`` as a non-negative integer (default 1024)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_CACHE_MIB
    try:
        mib = int(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_VAR} must be a whole number of MiB (0 disables), got {raw!r}"
        ) from None
    if mib < 0:
        raise ValueError(f"{ENV_VAR} must be >= 0 (0 disables), got {mib}")
    return mib


def keep_freed_host_memory(cache_mib: int = DEFAULT_CACHE_MIB) -> bool:
    """Apply the policy above with a cache of `cache_mib` MiB; False where it cannot apply
    (no glibc) or `cache_mib` is 0. Returns True when malloc accepted both settings."""
    global _applied_mib
    if cache_mib <= 0:
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, _trim_bytes(cache_mib)) == 1 and ok
    _applied_mib = cache_mib if ok else None
    return ok


def malloc_env(cache_mib: int = DEFAULT_CACHE_MIB) -> dict[str, str]:
    """The same policy for a process not yet started, as glibc's environment variables
    (mallopt(3)): `tensortape launch` gives them to the ranks of a script of your own, which
    would otherwise page-fault its activations in every step (in the 2-rank DCGAN benchmark
    that was a quarter of the CPU time, in the kernel). Empty when `cache_mib` is 0."""
    if cache_mib <= 0:
        return {}
    return {
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
        "MALLOC_TRIM_THRESHOLD_": str(_trim_bytes(cache_mib)),
    }


def _trim_bytes(cache_mib: int) -> int:
    return min(cache_mib, (2**31 - 1) // 2**20) * 2**20  # mallopt takes a C int


def applied_cache_mib() -> int | None:
    """The cache size in MiB this process runs with, or None when malloc's defaults apply."""
    return _applied_mib


def release_host_memory() -> None:
    """Free the CPU kernels' scratch buffers and give unused heap back to the OS."""
    import gc

    from kernels import cpu

    cpu.release_workspace()
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def configure_from_env() -> bool:
    """Apply the policy with ``TENSORTAPE_HOST_CACHE_MB``'s cache (default 1024 MiB; 0 leaves
    malloc alone). The CLI and the benchmarks call it at start. Returns whether it applied."""
    return keep_freed_host_memory(cache_mib_from_env())
