"""Batch normalisation with batch statistics as one op with a hand-written backward.

Written as engine ops, training-mode batch norm records ~8 full-size ops forward and twice that
backward; fused it makes 6 passes forward and ~6 backward, with the per-channel sums done by
`einsum` (no full-size temporaries). When the backward itself is recorded (`create_graph=True`,
gradient penalties) it is written in engine ops, so gradients of gradients stay exact.
"""

from __future__ import annotations

from ..autograd import Function, is_grad_enabled
from ..device import on_device
from ..tensorbase import TensorBase
from .reduction import sum
from .shape import reshape

__all__ = ["batch_norm_train", "sync_batch_norm_train"]

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
        # gx = w invstd (gy - mean(gy) - xhat mean(gy xhat)) = gy a + xhat k + c with per-channel
        # a = w invstd, k = -a sum(gy xhat) / n, c = -a sum(gy) / n; written once
        # (Function.operands) for raw arrays and, when recorded, for Tensors.
        (x, *params), g = self.operands(gy)
        wanted = [t.requires_grad for t in self.inputs]
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        xhat, invstd, csum = self._statistics(x)
        gb = csum(g) if wanted[0] or (len(wanted) > 2 and wanted[2]) else None
        gw = csum(g * xhat) if wanted[0] or (len(wanted) > 1 and wanted[1]) else None
        gx = None
        if wanted[0]:
            sum_gy, sum_gyx, n = self._channel_totals(g, xhat, gb, gw)
            a = invstd if not params else invstd * params[0]
            k, c = a * sum_gyx * (-1 / n), a * sum_gy * (-1 / n)
            gx = g * a.reshape(shape) + xhat * k.reshape(shape) + c.reshape(shape)
        grads = (gx,) + tuple(g if w else None for w, g in zip(wanted[1:], (gw, gb)))
        return self.results(gy, *grads)

    def _channel_totals(self, g, xhat, sum_gy, sum_gyx):
        """(sum gy, sum gy xhat, n) over every sample the statistics saw: this batch's here;
        SyncBatchNormTrain all-reduces them over the ranks."""
        return sum_gy, sum_gyx, self.n

    def _statistics(self, x):
        """(xhat, per-channel invstd, per-channel sum) for the backward: the forward's arrays on
        the fast path; recomputed from x in engine ops when recorded (x's second derivative
        flows through them)."""
        if not isinstance(x, TensorBase):
            sub = _subscripts(x.ndim)
            return self.xhat, self.invstd, lambda v: self.xp.einsum(f"{sub}->c", v)
        axes = (0,) + tuple(range(2, x.ndim))
        centred = x - x.mean(axes, keepdim=True)
        invstd = ((centred * centred).mean(axes, keepdim=True) + self.eps).rsqrt()
        return centred * invstd, reshape(invstd, (x.shape[1],)), lambda v: sum(v, axes)


@on_device
def batch_norm_train(
    input: TensorBase, weight: TensorBase | None, bias: TensorBase | None, eps: float
) -> tuple[TensorBase, object, object]:
    """(normalised input, batch mean, biased batch variance); the statistics are raw arrays."""
    fn = BatchNormTrain(eps)
    if weight is None and bias is not None:
        weight = input._new(input.xp.ones(input.shape[1], input.dtype), input.device)
    args = [a for a in (input, weight, bias) if a is not None]
    return fn(*args), fn.mean, fn.var


class SyncBatchNormTrain(BatchNormTrain):
    """BatchNormTrain with the statistics of the whole process group (SyncBatchNorm).

    Forward all-reduces per channel (sum x, sum x^2) and the sample count in one float64 buffer;
    backward all-reduces (sum gy, sum gy xhat). Per-rank batches may differ in size. The weight
    and bias gradients stay this rank's sums (DistributedDataParallel averages them), and the
    input gradient is that of the sum of every rank's loss, so after DDP's average the
    parameters get the gradient of the mean loss, as one process with the whole batch would.
    """

    def __init__(self, eps: float):
        self.eps = eps

    def _all_reduce(self, array):
        from .. import distributed

        distributed.all_reduce_array(array, what="SyncBatchNorm").wait()

    def forward(self, x, weight=None, bias=None):
        xp, c = self.xp, x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        stats = xp.empty(2 * c + 1, "float64")
        stats[:c] = x.sum(axes, dtype="float64")
        stats[c : 2 * c] = (x * x).sum(axes, dtype="float64")
        stats[2 * c] = x.size // c
        self._all_reduce(stats)
        self.count = stats[2 * c :]  # total samples per channel over all ranks (device array)
        mean = stats[:c] / self.count
        var = xp.maximum(stats[c : 2 * c] / self.count - mean * mean, 0.0)
        self.mean, self.var = mean.astype(x.dtype), var.astype(x.dtype)
        self.invstd = 1 / xp.sqrt(self.var + x.dtype.type(self.eps))
        xhat = (x - self.mean.reshape(shape)) * self.invstd.reshape(shape)
        self.xhat = xhat
        y = xhat if weight is None else xhat * weight.reshape(shape)
        return y + bias.reshape(shape) if bias is not None else y.copy() if y is xhat else y

    def backward(self, gy):
        if is_grad_enabled():
            raise RuntimeError(
                "SyncBatchNorm has no double backward (create_graph=True): use BatchNorm in a "
                "network that needs gradients of gradients (WGAN-GP, R1)"
            )
        return super().backward(gy)  # BatchNormTrain's formula with _channel_totals below

    def _channel_totals(self, g, xhat, sum_gy, sum_gyx):
        """(sum gy, sum gy xhat) of every rank, summed in float64 and all-reduced in one
        buffer, and the total sample count: the input gradient of the sum of all ranks' losses.
        The weight and bias gradients stay this rank's sums (DDP averages them)."""
        c, axes = g.shape[1], (0,) + tuple(range(2, g.ndim))
        sums = self.xp.empty(2 * c, "float64")
        sums[:c], sums[c:] = g.sum(axes, dtype="float64"), (g * xhat).sum(axes, dtype="float64")
        self._all_reduce(sums)
        return sums[:c].astype(g.dtype), sums[c:].astype(g.dtype), self.count.astype(g.dtype)


def sync_batch_norm_train(
    input: TensorBase, weight: TensorBase | None, bias: TensorBase | None, eps: float
):
    """(normalised input, mean, biased variance, total count) with the statistics of all ranks;
    the statistics are raw arrays on the input's device (no host sync)."""
    fn = SyncBatchNormTrain(eps)
    if weight is None and bias is not None:
        weight = input._new(input.xp.ones(input.shape[1], input.dtype), input.device)
    args = [a for a in (input, weight, bias) if a is not None]
    return fn(*args), fn.mean, fn.var, fn.count
