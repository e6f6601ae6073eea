"""Batch normalisation with batch statistics as one op with a hand-written backward.

Written as engine ops, training-mode batch norm records ~8 full-size ops forward and twice that
backward; fused on the CPU it makes 5 passes over x's size forward (sum, centre, sum of squares,
scale by w invstd, add the bias) and 6 backward (two sums, four for the input gradient), with
the per-channel sums done by `einsum` (no full-size temporaries) and only the centred input
kept between them. On cuda (float32/64) it is two kernels each way
(kernels/cuda/norm.cu: per-slice sums, then one thread per element), the running statistics
moved inside the forward kernel. On the CPU at more than one BLAS thread the elementwise
passes over big arrays (centre, scale and shift; the input gradient's four) run on one span of
the batch per thread (kernels.parallel.each_span, bit for bit one thread's numbers); the
per-channel sums stay on one thread (their order of summation is the result's). When the
backward itself is recorded (`create_graph=True`, gradient penalties) it is written in engine
ops, so gradients of gradients stay exact.
"""

from __future__ import annotations

import numpy

from kernels import parallel

from ..autograd import Function, is_grad_enabled
from ..device import on_device
from ..dtypes import is_low_precision
from ..tensorbase import TensorBase
from .math import _cut
from .reduction import sum
from .shape import cat, reshape

__all__ = ["batch_norm_train", "sync_batch_norm_train", "AllReduceSum"]

_LETTERS = "abdefghijklm"  # "c" is the channel axis


def _subscripts(ndim: int) -> str:
    """einsum subscripts of an (N, C, ...) array: 'acb...' with 'c' the channel axis."""
    return _LETTERS[0] + "c" + _LETTERS[1 : ndim - 1]


class BatchNormTrain(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over all dims but 1.

    After the call, `mean` and `var` (biased) hold the batch statistics per channel. On cuda
    (float32/64) forward and backward are two kernels each (kernels/norm_gpu.py), and the
    `running` arrays (mean, var; contiguous, x's dtype) move toward the batch statistics inside
    the forward kernel; `moved_running` says whether they did.

    float16/bfloat16 input (autocast's, with float32 weight and bias or its own): statistics,
    normalisation and gradients in float32 (the cuda kernels on float32 copies there), as
    PyTorch's (cuDNN's) opmath, with float32 copies that live only inside forward/backward; the
    output, what backward keeps (x - mean, or x on cuda) and the input gradient in the input's
    dtype, the weight and bias gradients in theirs.

    The CPU forward keeps the centred input x - mean (xhat = centred invstd is never formed):
    y = centred (w invstd) + b, and the backward's sums and input gradient read it.
    """

    fused = False  # the forward ran the cuda kernels (SyncBatchNormTrain never does)
    moved_running = False

    def __init__(self, eps: float, running=None, momentum: float = 0.0):
        self.eps, self.running, self.momentum = eps, running, momentum

    def forward(self, x, weight=None, bias=None):
        if is_low_precision(x.dtype):
            return self._forward_low(x, weight, bias)
        if self.device.type == "cuda" and x.dtype.name in ("float32", "float64"):
            return self._forward_cuda(x, weight, bias)
        return self._forward(x, weight, bias)

    def _forward_low(self, x, weight, bias):
        """float16/bfloat16 x: the float32 forward on widened copies, output rounded to x's
        dtype; what backward keeps is held in x's dtype (half the memory until backward)."""
        y = self.forward(*(None if a is None else _float32(a) for a in (x, weight, bias)))
        if self.fused:  # the kernels' backward reads x: the half input, widened there
            self.x = self.xp.ascontiguousarray(x)
        else:
            self.centred = self.centred.astype(x.dtype)
        return y.astype(x.dtype)

    def _forward(self, x, weight, bias):
        xp = self.xp
        sub = _subscripts(x.ndim)
        n = x.size // x.shape[1]
        self.n = n
        self.mean = xp.einsum(f"{sub}->c", x) / x.dtype.type(n)
        centred = _centre(xp, x, self.mean)
        self.var = xp.einsum(f"{sub},{sub}->c", centred, centred) / x.dtype.type(n)
        self.invstd = 1 / xp.sqrt(self.var + x.dtype.type(self.eps))
        self.centred = centred
        return _affine(xp, centred, self.invstd, weight, bias)

    def _forward_cuda(self, x, weight, bias):
        from kernels import norm_gpu  # noqa: PLC0415 (CuPy only on cuda)

        self.x = x = self.xp.ascontiguousarray(x)
        self.n = x.size // x.shape[1]
        rm, rv = self.running if self.running is not None else (None, None)
        self.moved_running = all(
            r is not None and r.dtype == x.dtype and r.flags.c_contiguous for r in (rm, rv)
        )
        running = (rm, rv) if self.moved_running else (None, None)
        y, self.mean, self.var, self.invstd = norm_gpu.batch_norm_forward(
            x, weight, bias, self.eps, *running, self.momentum
        )
        self.fused, self.running = True, None
        return y

    def _backward_cuda(self, gy):
        """(gx or None, gw, gb) from the kernels, in float32 for a float16/bfloat16 x."""
        from kernels import norm_gpu  # noqa: PLC0415

        wanted = [t.requires_grad for t in self.inputs]
        weight = _float32(self.inputs[1].array) if len(self.inputs) > 1 else None
        gx, gw, gb = norm_gpu.batch_norm_backward(
            _float32(gy), _float32(self.x), self.mean, self.invstd, weight, want_gx=wanted[0]
        )
        return (gx,) + tuple(g if w else None for w, g in zip(wanted[1:], (gw, gb)))

    def backward(self, gy):
        if self.fused and not is_grad_enabled():
            grads = self._backward_cuda(gy.array)
        elif not is_grad_enabled():
            params = [t.array for t in self.inputs[1:]]
            grads = self._backward_arrays([_float32(p) for p in params], _float32(gy.array))
        else:
            (x, *params), g = self.operands(gy)
            grads = self._backward(_float32(x), params, _float32(g))
        # float32 inside for a float16/bfloat16 x: each gradient in its input's dtype
        dtypes = [t.dtype for t in self.inputs]
        return self.results(
            gy, *[None if d is None else _cast(d, t) for d, t in zip(grads, dtypes)]
        )

    def _backward_arrays(self, params, g):
        """The backward on raw arrays from the kept centred input d = x - mean:
        gx = w invstd (gy - mean(gy) - d invstd^2 mean(gy d)) (PyTorch's CPU formula),
        gw = invstd sum(gy d), gb = sum(gy); 2 einsum sums and 4 full-size passes."""
        xp, wanted = self.xp, [t.requires_grad for t in self.inputs]
        d, invstd, sub = _float32(self.centred), self.invstd, _subscripts(g.ndim)
        want_b = wanted[0] or (len(wanted) > 2 and wanted[2])
        want_w = wanted[0] or (len(wanted) > 1 and wanted[1])
        sum_gy = xp.einsum(f"{sub}->c", g) if want_b else None
        sum_gyd = xp.einsum(f"{sub},{sub}->c", g, d) if want_w else None
        gw = None if sum_gyd is None else sum_gyd * invstd
        gx = None
        if wanted[0]:  # every rank's sums (SyncBatchNormTrain); gw and gb stay this rank's
            total_gy, total_gyd, n = self._channel_totals(g, d, sum_gy, sum_gyd)
            a = invstd if not params else invstd * params[0]
            k = _per_channel(xp, total_gyd * (invstd * invstd / n), d)
            gx = _input_grad(xp, g, d, k, _per_channel(xp, total_gy / n, d), _per_channel(xp, a, d))
        return (gx,) + tuple(g if w else None for w, g in zip(wanted[1:], (gw, sum_gy)))

    def _backward(self, x, params, g):
        """The recorded backward (create_graph=True) in engine ops:
        gx = w invstd (gy - mean(gy) - xhat mean(gy xhat)) = gy a + xhat k + c with per-channel
        a = w invstd, k = -a sum(gy xhat) / n, c = -a sum(gy) / n."""
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
        return (gx,) + tuple(g if w else None for w, g in zip(wanted[1:], (gw, gb)))

    def _channel_totals(self, g, v, sum_gy, sum_gyv):
        """(sum gy, sum gy v, n) over every sample the statistics saw, v the centred input
        (raw arrays) or xhat (recorded): this batch's here; SyncBatchNormTrain all-reduces
        them over the ranks."""
        return sum_gy, sum_gyv, self.n

    def _statistics(self, x):
        """(xhat, per-channel invstd, per-channel sum) for the recorded backward, recomputed
        from the Tensor x in engine ops (x's second derivative flows through them)."""
        axes = (0,) + tuple(range(2, x.ndim))
        centred = x - x.mean(axes, keepdim=True)
        invstd = ((centred * centred).mean(axes, keepdim=True) + self.eps).rsqrt()
        return centred * invstd, reshape(invstd, (x.shape[1],)), lambda v: sum(v, axes)


def _affine(xp, centred, invstd, weight, bias):
    """centred (w invstd) + b: the normalisation and the weight as one per-channel factor, one
    pass over the array where xhat = centred invstd, then xhat w, took two."""
    factor = _per_channel(xp, invstd if weight is None else invstd * weight, centred)
    shift = None if bias is None else _per_channel(xp, bias, centred)
    if _cut(xp, centred):
        y = numpy.empty_like(centred, dtype=numpy.result_type(centred, factor))

        def part(s):
            numpy.multiply(centred[s], factor, out=y[s])
            if shift is not None:
                y[s] += shift

        parallel.each_span(part, len(y), y.nbytes)
        return y
    y = centred * factor
    if shift is not None:
        y += shift
    return y


def _centre(xp, x, mean):
    """x - mean per channel (C,), cut over the BLAS threads as the module says."""
    m = _per_channel(xp, mean, x)
    if not (_cut(xp, x) and x.flags.c_contiguous):
        # x - m's layout (NumPy's choice for a strided x) decides the order of the variance's
        # einsum sums: only a C-contiguous x, whose x - m is C-contiguous, is cut
        return x - m
    centred = numpy.empty_like(x, dtype=numpy.result_type(x, m))
    parallel.each_span(lambda s: numpy.subtract(x[s], m, out=centred[s]), len(x), x.nbytes)
    return centred


def _input_grad(xp, g, d, k, m, a):
    """(g - d k - m) a with per-channel operands k, m, a: the input gradient's four passes."""
    if not _cut(xp, g) or g.shape != d.shape:
        gx = d * k
        xp.subtract(g, gx, out=gx)
        gx -= m
        gx *= a
        return gx
    gx = numpy.empty_like(d, dtype=numpy.result_type(d, k))

    def part(s):
        gs = gx[s]
        numpy.multiply(d[s], k, out=gs)
        numpy.subtract(g[s], gs, out=gs)
        gs -= m
        gs *= a

    parallel.each_span(part, len(gx), gx.nbytes)
    return gx


def _per_channel(xp, v, like):
    """The per-channel values v (C,) as an operand for the (N, C, ...) array `like`: repeated
    over the trailing dims into a contiguous (1, C, ...) array (1/N of like's size), so that a
    NumPy op with a contiguous `like` runs one inner loop of C H W per sample instead of one of
    H W per (sample, channel): that loop overhead made a (1, C, 1, 1) broadcast op 1.6-1.9x
    slower on 14x14 and 7x7 maps. The values are the same either way."""
    shape = (1, like.shape[1]) + (1,) * (like.ndim - 2)
    if like.ndim == 2:
        return v.reshape(shape)
    out = xp.empty((1,) + like.shape[1:], v.dtype)
    out[...] = v.reshape(shape)
    return out


def _float32(v):
    """`v` (array or Tensor) in float32 if it is float16/bfloat16."""
    if not is_low_precision(v.dtype):
        return v
    return v.float() if isinstance(v, TensorBase) else v.astype(numpy.float32)


def _cast(v, dtype):
    if v.dtype == dtype:
        return v
    return v.to(dtype) if isinstance(v, TensorBase) else v.astype(dtype)


@on_device
def batch_norm_train(
    input: TensorBase,
    weight: TensorBase | None,
    bias: TensorBase | None,
    eps: float,
    running_mean: TensorBase | None = None,
    running_var: TensorBase | None = None,
    momentum: float = 0.0,
) -> tuple[TensorBase, object, object]:
    """(normalised input, batch mean, biased batch variance); the statistics are raw arrays.

    `running_mean` / `running_var` (either may be None) move in place toward the batch mean and
    the unbiased batch variance by `momentum`, outside the graph: inside the forward kernel on
    cuda, else by two in-place ops each. The input must have more than one value per channel
    when a running variance is given (the caller checks)."""
    running = [t for t in (running_mean, running_var) if t is not None]
    for t in running:
        t._inplace(None)  # a buffer about to change: its version moves (and it may not be a leaf)
    both = len(running) == 2
    fn = BatchNormTrain(eps, (running_mean.array, running_var.array) if both else None, momentum)
    if weight is None and bias is not None:
        weight = input._new(input.xp.ones(input.shape[1], input.dtype), input.device)
    args = [a for a in (input, weight, bias) if a is not None]
    out = fn(*args)
    if not fn.moved_running and running:
        n = input.numel() // input.shape[1]
        update_running(running_mean, fn.mean, momentum)
        update_running(running_var, fn.var, momentum, n / (n - 1) if n > 1 else 1.0)
    return out, fn.mean, fn.var


def update_running(running: TensorBase | None, batch_value, factor: float, scale: float = 1.0):
    """running <- (1 - factor) running + factor scale batch_value (an array), in place, outside
    the graph; nothing for running None. Every norm layer's running statistics move here."""
    if running is None:
        return
    new = batch_value.reshape(running.shape).astype(running.dtype, copy=False)
    running.mul_(1.0 - factor).add_(new, alpha=factor * scale)


class AllReduceSum(Function):
    """y = the sum of x over every rank (a new array on every rank; x unchanged).

    Its own adjoint: each rank's y has every rank's x with weight 1, so dL/dx_r = sum_s dL/dy_s,
    the all-reduced gradient. The backward is this op again, so when it is recorded
    (`create_graph=True`) gradients of gradients cross the ranks too. Every rank must reach it
    in the same order, forward and backward: it is a collective."""

    saves_inputs = False

    def forward(self, x):
        from .. import distributed

        y = x.copy()  # C-contiguous, and x stays as it was
        distributed.all_reduce_array(y, what="SyncBatchNorm").wait()
        return y

    def backward(self, gy):
        return AllReduceSum()(gy)


class SyncBatchNormTrain(BatchNormTrain):
    """BatchNormTrain with the statistics of the whole process group (SyncBatchNorm).

    Forward all-reduces per channel (sum x, sum x^2) and the sample count in one float64 buffer;
    backward all-reduces (sum gy, sum gy xhat). Per-rank batches may differ in size. The weight
    and bias gradients stay this rank's sums (DistributedDataParallel averages them), and the
    input gradient is that of the sum of every rank's loss, so after DDP's average the
    parameters get the gradient of the mean loss, as one process with the whole batch would.

    Recorded (`create_graph=True`: WGAN-GP, R1) the backward is BatchNormTrain's formula in
    engine ops with both cross-rank sums as `AllReduceSum` (two collectives, not one: the
    statistics are recomputed from x on the tape, so x's second derivative reaches every
    rank); the plain backward stays one float64 all-reduce of raw arrays.
    """

    def __init__(self, eps: float):
        self.eps = eps

    def _all_reduce(self, array):
        from .. import distributed

        distributed.all_reduce_array(array, what="SyncBatchNorm").wait()

    def forward(self, x, weight=None, bias=None):
        xp, c = self.xp, x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
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
        self.centred = _centre(xp, x, self.mean)
        return _affine(xp, self.centred, self.invstd, weight, bias)

    def _statistics(self, x):
        """xhat and invstd of every rank's x in engine ops (the recorded backward): the
        per-channel sums of (x - m) and (x - m)^2 all-reduced (m, the forward's mean, a
        constant shift against cancellation in float32)."""
        c, axes = x.shape[1], (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        shift = x._new(self.mean.reshape(shape), x.device)
        d = x - shift
        totals = AllReduceSum()(cat([sum(d, axes), sum(d * d, axes)]))
        n = self._count(x)
        dmean = totals[:c] / n
        invstd = (totals[c:] / n - dmean * dmean + self.eps).rsqrt()
        xhat = (d - reshape(dmean, shape)) * reshape(invstd, shape)
        return xhat, invstd, lambda v: sum(v, axes)

    def _count(self, like):
        """The total sample count (shape (1,), like's dtype) as an array, or a constant Tensor
        when recorded: read on the device, no host sync."""
        count = self.count.astype(like.dtype)
        return like._new(count, like.device) if isinstance(like, TensorBase) else count

    def _channel_totals(self, g, v, sum_gy, sum_gyv):
        """(sum gy, sum gy v) of every rank and the total sample count: the input gradient
        of the sum of all ranks' losses. Fast path: summed in float64 and all-reduced in one
        buffer; recorded: this rank's sums (the ones the weight and bias gradients use)
        through AllReduceSum. The weight and bias gradients stay this rank's sums (DDP
        averages them)."""
        c = g.shape[1]
        if isinstance(g, TensorBase):
            totals = AllReduceSum()(cat([sum_gy, sum_gyv]))
            return totals[:c], totals[c:], self._count(g)
        axes = (0,) + tuple(range(2, g.ndim))
        sums = self.xp.empty(2 * c, "float64")
        sums[:c], sums[c:] = g.sum(axes, dtype="float64"), (g * v).sum(axes, dtype="float64")
        self._all_reduce(sums)
        return sums[:c].astype(g.dtype), sums[c:].astype(g.dtype), self._count(g)


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
