"""Padding layers over `F.pad` (CycleGAN's ResNet blocks use ReflectionPad2d)."""

from __future__ import annotations

import engine.functional as F
from engine import Tensor

from .module import Module

__all__ = ["ReflectionPad2d", "ReplicationPad2d", "ZeroPad2d", "ConstantPad2d", "CircularPad2d"]


def _quad(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return (padding,) * 4
    padding = tuple(padding)
    if len(padding) != 4:
        raise ValueError(f"padding must be an int or (left, right, top, bottom), got {padding}")
    return padding


class _Pad2d(Module):
    mode = "constant"

    def __init__(self, padding) -> None:
        super().__init__()
        self.padding = _quad(padding)

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, mode=self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ReflectionPad2d(_Pad2d):
    """Mirror the border pixels (without repeating the edge)."""

    mode = "reflect"


class ReplicationPad2d(_Pad2d):
    """Repeat the edge pixels."""

    mode = "replicate"


class CircularPad2d(_Pad2d):
    """Wrap around (periodic boundary)."""

    mode = "circular"


class ConstantPad2d(_Pad2d):
    """Pad with a constant `value`."""

    def __init__(self, padding, value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, mode="constant", value=self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    """Pad with zeros."""

    def __init__(self, padding) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"
