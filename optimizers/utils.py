"""Gradient clipping: `clip_grad_norm_` and `clip_grad_value_` (torch.nn.utils' semantics).

Both work on the raw gradient arrays of the parameters' device and never copy to the host, so
clipping on the GPU costs no synchronisation (unless ``error_if_nonfinite`` asks for a check).
"""

from __future__ import annotations

import math
from typing import Iterable

import engine
from engine import Tensor
from engine.autograd import owns_memory

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _with_grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """The parameters that have a gradient; their gradients must share one device."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    params = [p for p in params if p.grad is not None]
    devices = {str(p.grad.device) for p in params}
    if len(devices) > 1:
        raise RuntimeError(f"gradients to clip are on several devices: {sorted(devices)}")
    return params


def _writable(p_grad: Tensor) -> Tensor:
    """``p_grad`` itself if it can be scaled in place, else a copy that can."""
    return p_grad if owns_memory(p_grad.array) else engine.tensor(p_grad)


def _norm(xp, a, norm_type: float):
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    flat = a.reshape(-1)
    if norm_type == math.inf:
        return xp.max(xp.abs(flat))
    if norm_type == -math.inf:
        return xp.min(xp.abs(flat))
    if norm_type == 2.0:
        return xp.sqrt(xp.dot(flat, flat))
    return xp.linalg.norm(flat, ord=norm_type)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most
    ``max_norm``; returns the norm before clipping (a 0-d Tensor on the gradients' device).

    As in PyTorch the scale is ``min(1, max_norm / (total_norm + 1e-6))`` and is applied
    unconditionally (a no-op multiply by 1 when the norm is small), which avoids a host sync.
    """
    params = _with_grads(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not params:
        return engine.tensor(0.0)
    dev = params[0].grad.device
    with dev:  # raw array work on the gradients' device (cuda:1 included)
        return _clip_norm(params, dev, max_norm, norm_type, error_if_nonfinite)


def _clip_norm(params, dev, max_norm: float, norm_type: float, error_if_nonfinite: bool):
    xp = dev.xp
    norms = xp.stack([_norm(xp, p.grad.array, norm_type) for p in params])
    total = _norm(xp, norms, norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    coef = xp.minimum(total.dtype.type(max_norm) / (total + total.dtype.type(1e-6)), 1)
    for p in params:
        p.grad = _writable(p.grad)
        p.grad.array *= coef.astype(p.grad.dtype)
    return Tensor._wrap(xp.asarray(total), dev)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    for p in _with_grads(parameters):
        with p.grad.device:
            p.grad = _writable(p.grad)
            xp = p.grad.device.xp
            xp.clip(p.grad.array, -clip_value, clip_value, out=p.grad.array)
