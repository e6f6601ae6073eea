"""Batch normalisation with batch statistics as one op with a hand-written backward.

Written as engine ops, training-mode batch norm records ~8 full-size ops forward and twice that
backward; fused it makes 6 passes forward and ~6 backward, with the per-channel sums done by
`einsum` (no full-size temporaries). When the backward itself is recorded (`create_graph=True`,
gradient penalties) it is written in engine ops, so gradients of gradients stay exact.
"""

from __future__ import annotations

from ..autograd import Function, is_grad_enabled
from ..tensorbase import TensorBase
from .reduction import sum
from .shape import reshape

__all__ = ["batch_norm_train"]

_LETTERS = "abdefghijklm"  # "c" is the channel axis


def _subscripts(ndim: int) -> str:
    """einsum subscripts of an (N, C, ...) array: 'acb...' with 'c' the channel axis."""
    return _LETTERS[0] + "c" + _LETTERS[1 : ndim - 1]


class BatchNormTrain(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over all dims but 1.

    After the call, `mean` and `var` (biased) hold the batch statistics per channel.
    """

    def __init__(self, eps: float):
        self.eps = eps

    def forward(self, x, weight=None, bias=None):
        xp = self.xp
        sub = _subscripts(x.ndim)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        n = x.size // x.shape[1]
        self.n = n
        self.mean = xp.einsum(f"{sub}->c", x) / x.dtype.type(n)
        xhat = x - self.mean.reshape(shape)
        self.var = xp.einsum(f"{sub},{sub}->c", xhat, xhat) / x.dtype.type(n)
        self.invstd = 1 / xp.sqrt(self.var + x.dtype.type(self.eps))
        xhat *= self.invstd.reshape(shape)
        self.xhat = xhat
        if weight is None:
            return xhat.copy() if bias is None else xhat + bias.reshape(shape)
        y = xhat * weight.reshape(shape)
        if bias is not None:
            y += bias.reshape(shape)
        return y

    def backward(self, gy):
        if is_grad_enabled():
            return self._backward_recorded(gy)
        x = self.inputs[0]
        xp, g = self.xp, gy.array
        sub = _subscripts(g.ndim)
        shape = (1, g.shape[1]) + (1,) * (g.ndim - 2)
        weight = self.inputs[1].array if len(self.inputs) > 1 else None
        gb = xp.einsum(f"{sub}->c", g)
        gw = xp.einsum(f"{sub},{sub}->c", g, self.xhat)
        gx = None
        if x.requires_grad:
            # gx = w invstd (gy - mean(gy) - xhat mean(gy xhat)), per-channel factors first.
            a = self.invstd if weight is None else weight * self.invstd
            inv_n = g.dtype.type(1 / self.n)
            gx = g * a.reshape(shape)
            t = self.xhat * (-a * gw * inv_n).reshape(shape)
            gx += t
            gx -= (a * gb * inv_n).reshape(shape)
            gx = gy._new(gx, gy.device)
        return self._param_grads(gx, gy._new(gw, gy.device), gy._new(gb, gy.device))

    def _param_grads(self, gx, gw, gb):
        """(gx, gw, gb) cut to the inputs given, None for a weight or bias needing no grad."""
        return (gx,) + tuple(
            g if t.requires_grad else None for t, g in zip(self.inputs[1:], (gw, gb))
        )

    def _backward_recorded(self, gy):
        """The same gradient in engine ops of x, weight and gy (double backward)."""
        x = self.inputs[0]
        weight = self.inputs[1] if len(self.inputs) > 1 else None
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        mean = x.mean(axes, keepdim=True)
        centred = x - mean
        invstd = ((centred * centred).mean(axes, keepdim=True) + self.eps).rsqrt()
        xhat = centred * invstd
        params = self.inputs[1:]  # (weight, bias) as given: record only the wanted sums
        gw = sum(gy * xhat, axes) if params and params[0].requires_grad else None
        gb = sum(gy, axes) if len(params) > 1 and params[1].requires_grad else None
        gx = None
        if x.requires_grad:
            a = invstd if weight is None else invstd * reshape(weight, shape)
            gy_mean = gy.mean(axes, keepdim=True)
            gyx_mean = (gy * xhat).mean(axes, keepdim=True)
            gx = a * (gy - gy_mean - xhat * gyx_mean)
        return self._param_grads(gx, gw, gb)


def batch_norm_train(
    input: TensorBase, weight: TensorBase | None, bias: TensorBase | None, eps: float
) -> tuple[TensorBase, object, object]:
    """(normalised input, batch mean, biased batch variance); the statistics are raw arrays."""
    fn = BatchNormTrain(eps)
    if weight is None and bias is not None:
        weight = input._new(input.xp.ones(input.shape[1], input.dtype), input.device)
    args = [a for a in (input, weight, bias) if a is not None]
    return fn(*args), fn.mean, fn.var
