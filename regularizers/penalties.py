"""Weight penalties added to the loss: `L1(lam)` (lam * sum |w|) and `L2(lam)` (lam * sum w^2).

The decoupled alternative is an optimizer's `weight_decay`.
"""

from __future__ import annotations

from typing import Iterable, Union

import engine
from engine import Tensor
from layers.module import Module

__all__ = ["L1", "L2", "select_weights"]

Params = Union[Module, Iterable[Tensor], Iterable[tuple[str, Tensor]]]


def _is_weight(name: str | None, p: Tensor) -> bool:
    """Weights are matrices and kernels: not biases, not norm-layer scales (ndim <= 1)."""
    return p.ndim > 1 and not (name is not None and name.endswith("bias"))


def select_weights(params: Params, include_all: bool = False) -> list[Tensor]:
    """The tensors a penalty applies to: a Module, parameters, or `named_parameters()` pairs.

    Shared tensors are counted once.
    """
    if isinstance(params, Module):
        params = params.named_parameters()
    elif isinstance(params, Tensor):
        params = [params]
    chosen, seen = [], set()
    for item in params:
        name, p = item if isinstance(item, tuple) else (None, item)
        if not isinstance(p, Tensor):
            raise TypeError(f"expected Tensors or (name, Tensor) pairs, got {type(p).__name__}")
        if id(p) in seen or not (include_all or _is_weight(name, p)):
            continue
        seen.add(id(p))
        chosen.append(p)
    return chosen


class _Penalty:
    def __init__(self, lam: float, include_all: bool = False) -> None:
        if lam < 0:
            raise ValueError(f"{type(self).__name__}: lam must be non-negative, got {lam}")
        self.lam, self.include_all = float(lam), include_all

    def _term(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, params: Params) -> Tensor:
        """A scalar Tensor: lam times the sum of the per-tensor terms (0 when none apply)."""
        weights = select_weights(params, self.include_all)
        if not weights:
            return engine.zeros(())
        total = self._term(weights[0])
        for p in weights[1:]:
            total = total + self._term(p).to(total.device)
        return total * self.lam

    def __repr__(self) -> str:
        extra = ", include_all=True" if self.include_all else ""
        return f"{type(self).__name__}(lam={self.lam}{extra})"


class L1(_Penalty):
    """lam * sum |w|: drives many weights exactly toward zero (sparsity)."""

    def _term(self, p: Tensor) -> Tensor:
        return p.abs().sum()


class L2(_Penalty):
    """lam * sum w^2: shrinks every weight proportionally."""

    def _term(self, p: Tensor) -> Tensor:
        return (p * p).sum()
