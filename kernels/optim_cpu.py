"""Fused optimizer updates on NumPy arrays, in place.

Each function updates the parameter ``p`` and its state arrays in place from the gradient ``g``
(never written), with the same arguments as :mod:`kernels.optim_gpu` and the same formulas as
``kernels/cuda/optim.cu``. Work happens in ``out=`` ufunc calls on one or two scratch arrays;
scalars are cast to the parameter's dtype first, so float32 stays float32 (a NumPy float64
scalar would upcast every temporary).

Decay weights such as ``1 - beta2`` are computed once in double precision and then rounded to the
parameter's dtype (``_complement``), as PyTorch passes ``1 - beta2`` to its kernels: in float32,
``float32(1) - float32(0.999)`` is 0.00099998713, which made every Adam step 6.4e-6 too large.

Optional state is ``None`` when the rule does not use it (SGD without momentum, Adam without
AMSGrad, RMSprop uncentered or without momentum).

A float16/bfloat16 parameter (and gradient) is updated in float32 with float32 state and
rounded once, as the CUDA kernels do (``kernels.launch.OPMATH``; PyTorch's opmath_type).
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np

__all__ = [
    "sgd_update",
    "momentum_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "adadelta_update",
]


_LOW_PRECISION = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def _opmath(update):
    """``update(p, g, *state, **kw)`` for a float16/bfloat16 ``p`` (and ``g``): run in float32 on
    copies of both (the state is float32 already), then round ``p`` once, in place."""

    @functools.wraps(update)
    def wrapper(p: np.ndarray, g: np.ndarray, *state, **kw) -> None:
        if p.dtype not in _LOW_PRECISION:
            return update(p, g, *state, **kw)
        p32 = p.astype(np.float32)
        update(p32, g.astype(np.float32), *state, **kw)
        p[...] = p32
        return None

    return wrapper


def _complement(decay: float) -> float:
    """1 - decay in double precision (rounded once, to the array's dtype, where it is used)."""
    return 1.0 - float(decay)


def _ema(avg: np.ndarray, x: np.ndarray, decay: float, tmp: np.ndarray) -> None:
    """avg <- avg + (1 - decay) * (x - avg), in place, through the scratch array `tmp`."""
    t = avg.dtype.type
    np.subtract(x, avg, out=tmp)
    tmp *= t(_complement(decay))
    avg += tmp


def _ema_square(avg: np.ndarray, x: np.ndarray, decay: float, tmp: np.ndarray) -> None:
    """avg <- decay * avg + (1 - decay) * x * x, in place, through the scratch array `tmp`."""
    t = avg.dtype.type
    avg *= t(decay)
    np.multiply(x, t(_complement(decay)), out=tmp)
    tmp *= x
    avg += tmp


def _direction(p: np.ndarray, g: np.ndarray, weight_decay: float, maximize: bool) -> np.ndarray:
    """d = (-g if maximize else g) + weight_decay * p; ``g`` itself when both are off."""
    if weight_decay == 0:
        return np.negative(g) if maximize else g
    d = np.multiply(p, p.dtype.type(weight_decay))
    if maximize:
        d -= g
    else:
        d += g
    return d


@_opmath
def sgd_update(
    p: np.ndarray,
    g: np.ndarray,
    buf: np.ndarray | None,
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
    t = p.dtype.type
    d = _direction(p, g, weight_decay, maximize)
    if momentum != 0:
        if first:
            np.copyto(buf, d)
        else:
            buf *= t(momentum)
            if dampening != 0:
                buf += np.multiply(d, t(_complement(dampening)))
            else:
                buf += d
        if nesterov:
            ahead = np.multiply(buf, t(momentum))
            ahead += d
            d = ahead
        else:
            d = buf
    p -= np.multiply(d, t(lr))


@_opmath
def momentum_update(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    *,
    lr: float,
    mu: float,
    weight_decay: float,
    nesterov: bool,
) -> None:
    """v = mu v - lr d; p += v (textbook) or p += mu v - lr d (Nesterov, look-ahead form)."""
    t = p.dtype.type
    d = _direction(p, g, weight_decay, False)
    step = np.multiply(d, t(lr))
    v *= t(mu)
    v -= step
    if nesterov:
        ahead = np.multiply(v, t(mu))
        ahead -= step
        p += ahead
    else:
        p += v


@_opmath
def adam_update(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    vmax: np.ndarray | None,
    *,
    step_size: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    maximize: bool,
) -> None:
    """Adam/AdamW/AMSGrad with bias corrections folded in by the caller.

    p = p * decay - step_size * m / (sqrt(v) + eps), where step_size = lr sqrt(c2) / c1 and
    eps = eps sqrt(c2) (c_i = 1 - beta_i^t); ``vmax`` not None means AMSGrad.
    """
    t = p.dtype.type
    d = _direction(p, g, weight_decay, maximize)
    if decay != 1:
        p *= t(decay)
    tmp = np.empty_like(d)
    _ema(m, d, beta1, tmp)
    _ema_square(v, d, beta2, tmp)
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
    np.sqrt(v if vmax is None else vmax, out=tmp)
    tmp += t(eps)
    np.divide(m, tmp, out=tmp)
    tmp *= t(step_size)
    p -= tmp


@_opmath
def rmsprop_update(
    p: np.ndarray,
    g: np.ndarray,
    sq: np.ndarray,
    gavg: np.ndarray | None,
    buf: np.ndarray | None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    maximize: bool,
) -> None:
    """torch.optim.RMSprop; ``gavg`` not None means centered, ``buf`` the momentum buffer."""
    t = p.dtype.type
    d = _direction(p, g, weight_decay, maximize)
    tmp = np.empty_like(d)
    _ema_square(sq, d, alpha, tmp)
    if gavg is not None:
        _ema(gavg, d, alpha, tmp)
        np.multiply(gavg, gavg, out=tmp)
        np.subtract(sq, tmp, out=tmp)
        np.sqrt(tmp, out=tmp)
    else:
        np.sqrt(sq, out=tmp)
    tmp += t(eps)
    np.divide(d, tmp, out=tmp)
    if momentum > 0:
        buf *= t(momentum)
        buf += tmp
        np.multiply(buf, t(lr), out=tmp)
    else:
        tmp *= t(lr)
    p -= tmp


@_opmath
def adagrad_update(
    p: np.ndarray,
    g: np.ndarray,
    acc: np.ndarray,
    *,
    clr: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """torch.optim.Adagrad: acc += d^2; p -= clr d / (sqrt(acc) + eps)."""
    t = p.dtype.type
    d = _direction(p, g, weight_decay, maximize)
    tmp = np.multiply(d, d)
    acc += tmp
    np.sqrt(acc, out=tmp)
    tmp += t(eps)
    np.divide(d, tmp, out=tmp)
    tmp *= t(clr)
    p -= tmp


@_opmath
def adadelta_update(
    p: np.ndarray,
    g: np.ndarray,
    sq: np.ndarray,
    acc: np.ndarray,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """torch.optim.Adadelta: delta = sqrt(acc + eps) / sqrt(sq + eps) d; p -= lr delta."""
    t = p.dtype.type
    d = _direction(p, g, weight_decay, maximize)
    tmp = np.empty_like(d)
    _ema_square(sq, d, rho, tmp)
    delta = np.add(acc, t(eps))
    np.sqrt(delta, out=delta)
    np.add(sq, t(eps), out=tmp)
    np.sqrt(tmp, out=tmp)
    delta /= tmp
    delta *= d
    _ema_square(acc, delta, rho, tmp)
    delta *= t(lr)
    p -= delta
