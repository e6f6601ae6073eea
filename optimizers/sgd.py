"""Stochastic gradient descent: PyTorch's `SGD`, and the textbook `Momentum` and `Nesterov`.

`SGD(momentum=..., nesterov=...)` keeps PyTorch's buffer in gradient units (the current lr scales
it); `Momentum` / `Nesterov` keep the velocity in parameter units (each gradient scaled by the lr
of its own step). Identical at a constant lr; different once a schedule changes it.
"""

from __future__ import annotations

from typing import Any

from engine import Tensor

from .optimizer import Optimizer, ParamsT, _backend, check_number, required

__all__ = ["SGD", "Momentum", "Nesterov"]


class SGD(Optimizer):
    """torch.optim.SGD, same formulas and defaults.

    With d = g + weight_decay * p (``-g`` when maximizing):
    ``buf = momentum * buf + (1 - dampening) * d`` (``buf = d`` on the first step),
    ``d = d + momentum * buf`` if nesterov else ``buf``; ``p -= lr * d``.

    The momentum buffer is in gradient units and the current ``lr`` scales all of it, so a
    schedule rescales the accumulated velocity at once. `Momentum` / `Nesterov` keep the
    velocity in parameter units instead (the textbook form); the two agree while ``lr`` is
    constant and part at its first change (w = 1, g = 1, momentum 0.9, lr 0.1 then 0.05:
    ``SGD(nesterov=True)`` gives 0.81 then 0.6745, `Nesterov` 0.81 then 0.634). Use this class
    to match PyTorch under a learning-rate schedule.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("momentum", group["momentum"])
        check_number("dampening", group["dampening"], high=1.0)
        check_number("weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening, got "
                f"momentum={group['momentum']} dampening={group['dampening']}"
            )

    _multi_tensor = True

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        first = self._buffer(p, state, group)
        buf = state["momentum_buffer"].array if group["momentum"] != 0 else None
        _backend(p).sgd_update(p.array, grad, buf, **self._scalars(group), first=first)

    def _update_together(self, items: list, group: dict[str, Any]) -> None:
        firsts = {id(p): self._buffer(p, state, group) for p, _, state in items}
        from kernels import optim_gpu  # noqa: PLC0415 (CuPy only on cuda)

        for batch in self._batches(items, lambda p, state: firsts[id(p)]):
            ps, gs, states = zip(*batch, strict=True)
            optim_gpu.sgd_update_multi(
                [p.array for p in ps],
                list(gs),
                [s["momentum_buffer"].array for s in states] if group["momentum"] != 0 else None,
                **self._scalars(group),
                first=firsts[id(ps[0])],
            )

    def _buffer(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> bool:
        """Create the momentum buffer on the first step; whether this is that step."""
        if group["momentum"] != 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = self._zeros(p)
            return True
        return False

    @staticmethod
    def _scalars(group: dict[str, Any]) -> dict[str, Any]:
        return dict(
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )


class Momentum(Optimizer):
    """Classical momentum: ``v <- mu v - lr g; w <- w + v`` (velocity starts at zero).

    The velocity ``v`` is in parameter units: a learning rate enters it once, when its gradient
    is added, and a later ``lr`` change does not rescale what has accumulated.
    ``torch.optim.SGD(momentum=mu)`` (our `SGD`) keeps its buffer in gradient units,
    ``b <- mu b + g; w <- w - lr b``, so the current ``lr`` rescales all of it. The two are the
    same at a constant ``lr`` (``v = -lr b``) and part at the first change (w = 1, g = 1, mu 0.9,
    lr 0.1 then 0.05: this class gives 0.9 then 0.76, torch 0.9 then 0.805). Both are standard
    (Sutskever et al. 2013 write this one; PyTorch's docs note that theirs differs); use `SGD`
    to follow PyTorch under a learning-rate schedule.

    ``lr`` has no default; it may come from each param group instead.

    ``weight_decay`` adds ``weight_decay * w`` to the gradient (coupled L2).
    """

    _nesterov = False

    def __init__(
        self, params: ParamsT, lr: float = required, mu: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(params, dict(lr=lr, mu=mu, weight_decay=weight_decay))

    def _check_group(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("mu", group["mu"], high=1.0, high_open=True)
        check_number("weight_decay", group["weight_decay"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"velocity": self._zeros(p)}

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        _backend(p).momentum_update(
            p.array,
            grad,
            state["velocity"].array,
            lr=group["lr"],
            mu=group["mu"],
            weight_decay=group["weight_decay"],
            nesterov=self._nesterov,
        )


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, with the gradient taken after the momentum step.

    Sutskever et al. (2013) write it as ``v <- mu v - lr grad f(w + mu v); w <- w + v``. Following
    Bengio et al. (2012), the stored parameter is the look-ahead point ``W = w + mu v``, so the
    gradient the model computes at its current weights is exactly ``grad f(w + mu v)``, and the
    update becomes ``v <- mu v - lr g; W <- W + mu v - lr g`` (with the new ``v``). At the start
    ``v = 0`` so ``W = w``; at any time the textbook iterate is ``w = W - mu v``.

    As in `Momentum`, ``v`` is in parameter units; ``torch.optim.SGD(momentum=mu,
    nesterov=True)`` (our `SGD`) keeps ``b <- mu b + g; w <- w - lr (g + mu b)`` with ``b`` in
    gradient units. Equal at a constant ``lr``; at a change they part (w = 1, g = 1, mu 0.9,
    lr 0.1 then 0.05: this class 0.81 then 0.634, torch 0.81 then 0.6745).
    """

    _nesterov = True
