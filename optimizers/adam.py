"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), as in torch.optim."""

from __future__ import annotations

import math
from typing import Any

from engine import Tensor

from .optimizer import Optimizer, ParamsT, _backend, check_number

__all__ = ["Adam", "AdamW"]


def check_betas(betas: Any) -> None:
    """Two numbers in [0, 1), else a ValueError naming the bad one."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2))")
    for i, beta in enumerate(betas):
        check_number(f"beta parameter at index {i}", beta, high=1.0, high_open=True)


class Adam(Optimizer):
    """torch.optim.Adam: with d = g + weight_decay * p and t the step count,

    ``m = beta1 m + (1 - beta1) d``, ``v = beta2 v + (1 - beta2) d^2``,
    ``p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)``; ``amsgrad`` uses the
    running maximum of ``v``. The bias corrections are folded into one step size on the host
    and the update is one fused pass per parameter.
    """

    _decoupled = False

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas) if isinstance(betas, list) else betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("epsilon", group["eps"])
        check_betas(group["betas"])
        check_number("weight_decay", group["weight_decay"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {"step": 0, "exp_avg": self._zeros(p), "exp_avg_sq": self._zeros(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros(p)
        return state

    _multi_tensor = True

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        step = self._advance(p, state, group)
        vmax = state["max_exp_avg_sq"].array if group["amsgrad"] else None
        _backend(p).adam_update(
            p.array,
            grad,
            state["exp_avg"].array,
            state["exp_avg_sq"].array,
            vmax,
            **self._scalars(step, group),
        )

    def _update_together(self, items: list, group: dict[str, Any]) -> None:
        for p, _, state in items:
            self._advance(p, state, group)
        from kernels import optim_gpu  # noqa: PLC0415 (CuPy only on cuda)

        for batch in self._batches(items, lambda p, state: state["step"]):
            ps, gs, states = zip(*batch, strict=True)
            optim_gpu.adam_update_multi(
                [p.array for p in ps],
                list(gs),
                [s["exp_avg"].array for s in states],
                [s["exp_avg_sq"].array for s in states],
                [s["max_exp_avg_sq"].array for s in states] if group["amsgrad"] else None,
                **self._scalars(states[0]["step"], group),
            )

    def _advance(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> int:
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = self._zeros(p)
        state["step"] += 1
        return state["step"]

    def _scalars(self, step: int, group: dict[str, Any]) -> dict[str, Any]:
        """The kernel's scalars at `step`: bias corrections folded into step size and eps."""
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        root_c2 = math.sqrt(1 - beta2**step)
        return dict(
            step_size=lr * root_c2 / (1 - beta1**step),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"] * root_c2,
            weight_decay=0.0 if self._decoupled else wd,
            decay=1.0 - lr * wd if self._decoupled else 1.0,
            maximize=group["maximize"],
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay``
    before the Adam step (the decay is not part of the moments)."""

    _decoupled = True

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
