"""``cupy._core``: only what tensortape calls (cuBLAS compute types for the TF32 switch)."""

from . import _routines_linalg
from ._routines_linalg import get_compute_type, set_compute_type

__all__ = ["get_compute_type", "set_compute_type", "_routines_linalg"]
