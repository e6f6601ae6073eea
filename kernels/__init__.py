"""Raw-array kernels for convolution and pooling: no autograd, no imports from the project.

``kernels.cpu`` (NumPy) and ``kernels.gpu`` (CuPy + the RawKernels in ``kernels/cuda/*.cu``)
expose the same functions with the same signatures; :func:`backend` picks one by device type.
"""

from __future__ import annotations

from types import ModuleType

from kernels import cpu


def backend(device_type: str) -> ModuleType:
    """``kernels.cpu`` for ``"cpu"``, ``kernels.gpu`` for ``"cuda"``."""
    if device_type == "cpu":
        return cpu
    if device_type == "cuda":
        from kernels import gpu

        return gpu
    raise ValueError(f"no kernels for device type {device_type!r} (expected 'cpu' or 'cuda')")
