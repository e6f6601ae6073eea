"""Checking the CUDA path without a GPU.

- ``cuda_sim.hostbuild``: compile a ``kernels/cuda/*.cu`` source as host C++ (``shim.h``) and
  launch its kernels over the grid on the CPU, checking every argument against the C signature.
- ``cuda_sim.cupy`` / ``cuda_sim.cupyx``: a CuPy stand-in on NumPy whose ``RawModule`` uses that
  host build. ``install()`` puts it into ``sys.modules`` as ``cupy``/``cupyx`` so production code
  runs its cuda path unchanged; tests/conftest.py does this when no real GPU is usable.
"""

from __future__ import annotations

import sys

_ALIASES = ("cupy", "cupyx")


def install() -> None:
    """Make ``import cupy`` / ``import cupyx`` (and their submodules) give the stand-in.

    Any real CuPy already imported is dropped from ``sys.modules`` first.
    """
    from . import cupy, cupyx  # noqa: F401 (imports every submodule)

    uninstall()
    for name, module in list(sys.modules.items()):
        for alias in _ALIASES:
            prefix = f"{__name__}.{alias}"
            if name == prefix or name.startswith(prefix + "."):
                sys.modules[alias + name[len(prefix) :]] = module


def uninstall() -> None:
    """Remove every ``cupy``/``cupyx`` module (stand-in or real) from ``sys.modules``."""
    for name in list(sys.modules):
        if any(name == a or name.startswith(a + ".") for a in _ALIASES):
            del sys.modules[name]


def is_installed() -> bool:
    """Whether ``import cupy`` currently gives the stand-in."""
    return getattr(sys.modules.get("cupy"), "IS_CUDA_SIM", False) is True
