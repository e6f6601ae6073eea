"""`engine.set_num_threads` / `engine.get_num_threads`: PyTorch's names for the CPU thread count.

On the CPU the parallel work is BLAS's (the GEMMs of matmul, linear and convolution) and the
Winograd convs' chunks, which ``kernels.parallel`` shares out over the same count (NOTES.md
item 20); everything else runs on the calling thread (why not more: benchmarks/NOTES.md, item
12). So the count is BLAS's, set through threadpoolctl for every BLAS library NumPy has
loaded. CuPy work is unaffected.
"""

from __future__ import annotations


def _blas_libraries() -> list:
    """The BLAS libraries loaded now (not cached: SciPy and others may load another later)."""
    from threadpoolctl import ThreadpoolController

    return list(ThreadpoolController().select(user_api="blas").lib_controllers)


def get_num_threads() -> int:
    """Threads the CPU GEMMs use (the smallest count among the loaded BLAS libraries)."""
    return min((lib.num_threads for lib in _blas_libraries()), default=1)


def set_num_threads(n: int) -> None:
    """Use `n` threads for the CPU GEMMs, as ``torch.set_num_threads(n)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects an int >= 1, got {n!r}")
    for lib in _blas_libraries():
        lib.set_num_threads(n)
