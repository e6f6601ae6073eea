"""Fused optimizer updates on CuPy arrays: one RawKernel launch per parameter update.

Same functions and arguments as :mod:`kernels.optim_cpu`; the kernels are in
``kernels/cuda/optim.cu``, launched through :mod:`kernels.launch` (scalars as the parameter's
dtype ``T``, flags as ``int``, the length as ``long long``). CuPy is imported lazily, only when a
launch happens. Decay weights (``1 - beta2``, ...) are computed here in double and
rounded once, as PyTorch does.
"""

from __future__ import annotations

from typing import Any, Sequence

from kernels import launch

__all__ = [
    "sgd_update",
    "momentum_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "adadelta_update",
]


def _check_shapes(p: Any, arrays: Sequence[Any]) -> None:
    for a in arrays:
        if a is not None and (a.shape != p.shape or a.dtype != p.dtype):
            raise ValueError(
                f"optimizer update: array {a.dtype.name}{tuple(a.shape)} does not match the "
                f"parameter {p.dtype.name}{tuple(p.shape)}"
            )


def _launch(
    name: str,
    p: Any,
    g: Any,
    state: Sequence[Any],
    scalars: Sequence[float],
    flags: Sequence[bool],
) -> None:
    """Run ``name<T>(p, g, *state, n, *scalars, *flags)`` over every element of ``p``."""
    cp = launch._cupy()
    launch.c_type(p.dtype, f"fused CUDA optimizer updates (parameter of shape {tuple(p.shape)})")
    _check_shapes(p, (g, *state))
    for s in state:
        if s is not None and not s.flags.c_contiguous:
            raise ValueError(
                f"{name}: optimizer state must be C-contiguous, got strides {s.strides}"
            )
    g = cp.ascontiguousarray(g)
    # A kernel ignores strides: update a contiguous copy of a strided parameter, then write back.
    pc = p if p.flags.c_contiguous else cp.ascontiguousarray(p)
    launch.launch("optim.cu", name, (pc, g, *state), int(p.size), (), scalars, flags)
    if pc is not p:
        p[...] = pc


def sgd_update(
    p: Any,
    g: Any,
    buf: Any | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    first: bool,
) -> None:
    """torch.optim.SGD; ``buf`` is the momentum buffer (None when momentum is 0)."""
    if momentum != 0 and buf is None:
        raise ValueError("sgd_update: momentum != 0 needs a momentum buffer")
    _launch(
        "sgd_update",
        p,
        g,
        (buf,),
        (lr, momentum, 1.0 - float(dampening), weight_decay),
        (nesterov, maximize, first),
    )


def momentum_update(
    p: Any,
    g: Any,
    v: Any,
    *,
    lr: float,
    mu: float,
    weight_decay: float,
    nesterov: bool,
) -> None:
    """v = mu v - lr d; p += v (textbook) or p += mu v - lr d (Nesterov, look-ahead form)."""
    _launch("momentum_update", p, g, (v,), (lr, mu, weight_decay), (nesterov,))


def adam_update(
    p: Any,
    g: Any,
    m: Any,
    v: Any,
    vmax: Any | None,
    *,
    step_size: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    maximize: bool,
) -> None:
    """Adam/AdamW/AMSGrad, bias corrections folded into ``step_size`` and ``eps`` by the caller."""
    _launch(
        "adam_update",
        p,
        g,
        (m, v, vmax),
        (step_size, 1.0 - float(beta1), beta2, 1.0 - float(beta2), eps, weight_decay, decay),
        (vmax is not None, maximize),
    )


def rmsprop_update(
    p: Any,
    g: Any,
    sq: Any,
    gavg: Any | None,
    buf: Any | None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    maximize: bool,
) -> None:
    """torch.optim.RMSprop; ``gavg`` not None means centered, ``buf`` the momentum buffer."""
    if momentum > 0 and buf is None:
        raise ValueError("rmsprop_update: momentum > 0 needs a momentum buffer")
    _launch(
        "rmsprop_update",
        p,
        g,
        (sq, gavg, buf),
        (lr, alpha, 1.0 - float(alpha), eps, weight_decay, momentum),
        (gavg is not None, maximize),
    )


def adagrad_update(
    p: Any,
    g: Any,
    acc: Any,
    *,
    clr: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """torch.optim.Adagrad: acc += d^2; p -= clr d / (sqrt(acc) + eps)."""
    _launch("adagrad_update", p, g, (acc,), (clr, eps, weight_decay), (maximize,))


def adadelta_update(
    p: Any,
    g: Any,
    sq: Any,
    acc: Any,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """torch.optim.Adadelta: delta = sqrt(acc + eps) / sqrt(sq + eps) d; p -= lr delta."""
    scalars = (lr, rho, 1.0 - float(rho), eps, weight_decay)
    _launch("adadelta_update", p, g, (sq, acc), scalars, (maximize,))
