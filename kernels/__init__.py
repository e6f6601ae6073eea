"""Raw-array kernels for convolution and pooling: no autograd, no imports from the project.

``kernels.cpu`` (NumPy) and ``kernels.gpu`` (CuPy + the RawKernels in ``kernels/cuda/*.cu``)
expose the same functions with the same signatures; :func:`backend` picks one by device type.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

# OpenBLAS's idle workers spin on a core for 2^28 cycles (~0.1 s) after each threaded GEMM
# before they sleep; meanwhile the Winograd convs' own threads (kernels/parallel.py) get half a
# core each. 2^4 cycles: they sleep at once (a DCGAN step at 2 threads 138 -> 93 ms,
# benchmarks/NOTES.md item 20). OpenBLAS reads this once, when NumPy loads it, and has no call to
# change it later: so only when NumPy is not imported yet, and not over the user's own value.
OPENBLAS_SPIN = "4"
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_SPIN)

from kernels import cpu  # noqa: E402  (after the spin setting: it imports NumPy)


def backend(device_type: str) -> ModuleType:
    """``kernels.cpu`` for ``"cpu"``, ``kernels.gpu`` for ``"cuda"``."""
    if device_type == "cpu":
        return cpu
    if device_type == "cuda":
        from kernels import gpu

        return gpu
    raise ValueError(f"no kernels for device type {device_type!r} (expected 'cpu' or 'cuda')")
