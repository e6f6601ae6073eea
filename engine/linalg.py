"""`engine.linalg`, torch.linalg's names: norm, vector_norm, matrix_norm, svdvals, cross."""

from __future__ import annotations

from .ops.linalg import cross as _cross
from .ops.linalg import linalg_norm as norm
from .ops.linalg import matrix_norm, svdvals, vector_norm
from .tensor import Tensor

__all__ = ["norm", "vector_norm", "matrix_norm", "svdvals", "cross"]


def cross(input: Tensor, other: Tensor, *, dim: int = -1) -> Tensor:
    """The cross product of 3-vectors along `dim` (default the last, unlike torch.cross)."""
    return _cross(input, other, dim)
