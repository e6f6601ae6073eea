"""Pictures of tensors, as `torchvision.utils`: `make_grid` and `save_image` (dataio.images does
the work on host arrays; here `make_grid` of a Tensor returns a cpu Tensor)."""

from __future__ import annotations

from dataio import images
from dataio.images import save_image

from .tensor import Tensor, as_tensor

__all__ = ["make_grid", "save_image"]


def make_grid(
    tensor,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
):
    """`dataio.images.make_grid`: a cpu Tensor for Tensor input, else a NumPy array."""
    grid = images.make_grid(tensor, nrow, padding, normalize, value_range, scale_each, pad_value)
    return as_tensor(grid) if isinstance(tensor, Tensor) else grid
