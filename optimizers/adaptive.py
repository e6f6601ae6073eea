"""Per-coordinate adaptive methods: RMSprop, Adagrad and Adadelta, as in torch.optim."""

from __future__ import annotations

from typing import Any

from engine import Tensor

from .optimizer import Optimizer, ParamsT, _backend, check_number

__all__ = ["RMSprop", "Adagrad", "Adadelta"]


class RMSprop(Optimizer):
    """torch.optim.RMSprop (Hinton's lecture 6e): with d = g + weight_decay * p,

    ``sq = alpha sq + (1 - alpha) d^2``; ``avg = sqrt(sq - gavg^2) + eps`` when ``centered``
    (``gavg`` the running mean of d) else ``sqrt(sq) + eps``; with momentum
    ``buf = momentum buf + d / avg; p -= lr buf``, else ``p -= lr d / avg``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("epsilon", group["eps"])
        check_number("momentum", group["momentum"])
        check_number("weight_decay", group["weight_decay"])
        check_number("alpha", group["alpha"], high=1.0)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "square_avg": self._zeros(p)}

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        momentum = group["momentum"]
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = self._zeros(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = self._zeros(p)
        state["step"] += 1
        _backend(p).rmsprop_update(
            p.array,
            grad,
            state["square_avg"].array,
            state["grad_avg"].array if group["centered"] else None,
            state["momentum_buffer"].array if momentum > 0 else None,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=momentum,
            maximize=group["maximize"],
        )


class Adagrad(Optimizer):
    """torch.optim.Adagrad (Duchi et al. 2011): with d = g + weight_decay * p and step t,

    ``sum += d^2``; ``p -= lr / (1 + (t - 1) lr_decay) * d / (sqrt(sum) + eps)``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("lr_decay", group["lr_decay"])
        check_number("weight_decay", group["weight_decay"])
        check_number("initial_accumulator_value", group["initial_accumulator_value"])
        check_number("epsilon", group["eps"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "sum": self._zeros(p, group["initial_accumulator_value"])}

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        _backend(p).adagrad_update(
            p.array,
            grad,
            state["sum"].array,
            clr=clr,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


class Adadelta(Optimizer):
    """torch.optim.Adadelta (Zeiler 2012): with d = g + weight_decay * p,

    ``sq = rho sq + (1 - rho) d^2``, ``delta = sqrt(acc + eps) / sqrt(sq + eps) * d``,
    ``acc = rho acc + (1 - rho) delta^2``, ``p -= lr delta``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("rho", group["rho"], high=1.0)
        check_number("epsilon", group["eps"])
        check_number("weight_decay", group["weight_decay"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "square_avg": self._zeros(p), "acc_delta": self._zeros(p)}

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["step"] += 1
        _backend(p).adadelta_update(
            p.array,
            grad,
            state["square_avg"].array,
            state["acc_delta"].array,
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
