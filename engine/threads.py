"""`engine.set_num_threads` / `engine.get_num_threads`: PyTorch's names for the CPU thread count.

On the CPU the only parallel work is BLAS's (the GEMMs of matmul, linear and convolution);
everything else runs on the calling thread (why not more: benchmarks/NOTES.md, item 12). So
the count is BLAS's, set through threadpoolctl for every BLAS library NumPy has loaded. CuPy
work is unaffected.
"""

from __future__ import annotations

_controller = None


def _blas_libraries() -> list:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return list(_controller.lib_controllers)


def get_num_threads() -> int:
    """Threads the CPU GEMMs use (the smallest count among the loaded BLAS libraries)."""
    return min((lib.num_threads for lib in _blas_libraries()), default=1)


def set_num_threads(n: int) -> None:
    """Use `n` threads for the CPU GEMMs, as ``torch.set_num_threads(n)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects an int >= 1, got {n!r}")
    for lib in _blas_libraries():
        lib.set_num_threads(n)
