"""Fused optimizer updates on CuPy arrays: one RawKernel launch per parameter update, or for
SGD and Adam one launch for a whole group (``*_update_multi``, PyTorch's multi-tensor apply).

Same functions and arguments as :mod:`kernels.optim_cpu`; the kernels are in
``kernels/cuda/optim.cu``, launched through :mod:`kernels.launch` (scalars as the parameter's
dtype ``T``, flags as ``int``, the length as ``long long``). CuPy is imported lazily, only when a
launch happens. Decay weights (``1 - beta2``, ...) are computed here in double and
rounded once, as PyTorch does.

Parameters and gradients may be float16 or bfloat16: the kernels then compute in float32, take
float32 scalars and keep the optimizer state in float32 (``kernels.launch.opmath``), rounding
the parameter once per step, as PyTorch's fused Adam computes in its opmath type.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy

from kernels import launch

__all__ = [
    "sgd_update",
    "momentum_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "adadelta_update",
    "sgd_update_multi",
    "adam_update_multi",
]


def _check_shapes(p: Any, g: Any, state: Sequence[Any]) -> None:
    """The gradient is shaped and typed as ``p``; the state shaped as ``p``, of its compute
    dtype (float32 for a float16/bfloat16 parameter)."""
    want = launch.opmath(p.dtype)
    for a, dtype in ((g, p.dtype), *((s, want) for s in state)):
        if a is not None and (a.shape != p.shape or a.dtype != dtype):
            raise ValueError(
                f"optimizer update: array {a.dtype.name}{tuple(a.shape)} does not match the "
                f"parameter {p.dtype.name}{tuple(p.shape)} (wanted {numpy.dtype(dtype).name})"
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
    what = f"fused CUDA optimizer updates (parameter of shape {tuple(p.shape)})"
    launch.c_type(p.dtype, what, "optim.cu")
    _check_shapes(p, g, state)
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


# Multi-tensor updates ----------------------------------------------------------------------------
def _launch_multi(name: str, tensors: Sequence[Sequence[Any]], scalars, flags) -> None:
    """Run ``name<T>(tables..., offsets, n, count, *scalars, *flags)`` over every element of the
    parameters ``tensors[0]``, with one address table per list in ``tensors`` (an all-None
    list is a null table: state the update does not use), from :func:`launch.address_tables`."""
    params = tensors[0]
    p0 = params[0]
    launch.c_type(p0.dtype, "fused CUDA optimizer updates", "optim.cu")
    launch.check_group(params, name, "parameter")
    for i, p in enumerate(params):
        arrays = [t[i] for t in tensors[1:]]
        _check_shapes(p, arrays[0], arrays[1:])
        if any(a is not None and not a.flags.c_contiguous for a in arrays):
            raise ValueError(f"{name}: the gradients and state of parameter {i} must be contiguous")
    views, total = launch.address_tables(tensors)
    launch.launch("optim.cu", name, views, total, (len(params),), scalars, flags, p0.dtype)


def sgd_update_multi(
    ps: Sequence[Any],
    gs: Sequence[Any],
    bufs: Sequence[Any] | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    first: bool,
) -> None:
    """:func:`sgd_update` on every parameter of ``ps`` in one launch (bit-identical)."""
    if momentum != 0 and bufs is None:
        raise ValueError("sgd_update_multi: momentum != 0 needs momentum buffers")
    gs = [launch._cupy().ascontiguousarray(g) for g in gs]
    _launch_multi(
        "sgd_update_multi",
        (ps, gs, bufs if bufs is not None else [None] * len(ps)),
        (lr, momentum, 1.0 - float(dampening), weight_decay),
        (nesterov, maximize, first),
    )


def adam_update_multi(
    ps: Sequence[Any],
    gs: Sequence[Any],
    ms: Sequence[Any],
    vs: Sequence[Any],
    vmaxs: Sequence[Any] | None,
    *,
    step_size: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    maximize: bool,
) -> None:
    """:func:`adam_update` on every parameter of ``ps`` in one launch (bit-identical); all of
    them at the same step (the bias corrections are folded into ``step_size`` and ``eps``)."""
    gs = [launch._cupy().ascontiguousarray(g) for g in gs]
    _launch_multi(
        "adam_update_multi",
        (ps, gs, ms, vs, vmaxs if vmaxs is not None else [None] * len(ps)),
        (step_size, 1.0 - float(beta1), beta2, 1.0 - float(beta2), eps, weight_decay, decay),
        (vmaxs is not None, maximize),
    )
