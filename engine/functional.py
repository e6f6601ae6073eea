"""`engine.functional` (import as `F`): activations, softmax family, losses, linear, dropout.

PyTorch's names, argument orders and `reduction="mean"|"sum"|"none"`. Convolution and pooling ops
live in `engine.ops.conv` and are re-exported here.
"""

from __future__ import annotations

import math

import numpy

from kernels import parallel as _parallel

from . import random
from .autocast_mode import autocast_op as _autocast_op
from .autocast_mode import native_op as _native_op
from .autograd import Function
from .creation import full_like
from .device import check_later as _check_later
from .device import on_device as _on_device
from .dtypes import is_low_precision as _is_low_precision
from .dtypes import kind as _kind
from .grad_mode import is_grad_enabled as _is_grad_enabled
from .ops import (
    abs,
    clip,
    exp,
    linear,
    log,
    logsumexp,
    matmul,
    maximum,
    mean,
    pad,
    relu,
    sigmoid,
    sum,
    tanh,
    where,
)
from .ops.math import _cut, _on_kernel, _one_kernel
from .ops.shape import _norm_dim
from .tensor import Tensor, as_tensor

__all__ = [
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "softplus",
    "softmax",
    "log_softmax",
    "logsumexp",
    "linear",
    "dropout",
    "dropout2d",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
    "one_hot",
    "pad",
    "normalize",
    "kl_div",
    "matmul",
    "hardtanh",
    "relu6",
    "gaussian_nll_loss",
    "embedding",
    "cosine_similarity",
    "logsigmoid",
    "hardsigmoid",
    "hardswish",
    "mish",
    "selu",
    "celu",
    "softsign",
    "glu",
    "prelu",
    "scaled_dot_product_attention",
    "rms_norm",
]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: target shape {target.shape} must match input shape {input.shape}"
        )


# Activations -------------------------------------------------------------------------------
class LeakyReLU(Function):
    saves_inputs = False

    def __init__(self, slope):
        self.slope = slope

    def forward(self, x):
        if _on_kernel(self.xp, x.dtype) and self.slope >= 0:
            from kernels import activation_gpu  # noqa: PLC0415 (CuPy only on cuda)

            self.mask = None  # y > 0 where x > 0: the backward reads the output
            return activation_gpu.leaky_relu_forward(x, self.slope)
        slope = x.dtype.type(self.slope) if _kind(x.dtype) == "f" else self.slope
        if _cut(self.xp, x) and 0 <= self.slope <= 1:
            return self._forward_spans(x, slope)
        self.mask = x > 0
        y = x * slope
        if 0 <= self.slope <= 1 and y.dtype == x.dtype and isinstance(y, self.xp.ndarray):
            # max(x, slope x) is leaky_relu for 0 <= slope <= 1; ~10x faster than a where()
            # on a random mask.
            return self.xp.maximum(x, y, out=y)
        return self.xp.where(self.mask, x, y)

    def _forward_spans(self, x, slope):
        """The CPU forward above (mask, x slope, max) on one span of x's leading axis per BLAS
        thread (kernels/parallel.py): the same numbers, the passes done by both cores."""
        y, self.mask = numpy.empty_like(x), numpy.empty_like(x, dtype=bool)

        def part(s):
            xs, ys = x[s], y[s]
            numpy.greater(xs, 0, out=self.mask[s])
            numpy.multiply(xs, slope, out=ys)
            numpy.maximum(xs, ys, out=ys)

        _parallel.each_span(part, len(x), x.nbytes)
        return y

    def backward(self, gy):
        if self.mask is None:  # the one-kernel forward (cuda)
            y = self.output()
            if _one_kernel(self.xp, gy, y):
                from kernels import activation_gpu  # noqa: PLC0415

                gx = activation_gpu.leaky_relu_backward(y.array, gy.array, self.slope)
                return Tensor._wrap(gx, gy.device)
            self.mask = y.array > 0
        # 1 - slope + slope where x > 0 (exactly 1: checked for float16/32/64 and bfloat16 and
        # 10^5 slopes in [0, 1]), else slope: gy * scale is gy or gy * slope exactly.
        recorded, g = _is_grad_enabled(), gy.array
        if _cut(self.xp, g) and g.shape == self.mask.shape:
            scale = self._scale_spans(g, None if recorded else g)
        else:
            scale = self.mask.astype(gy.dtype)
            scale *= gy.dtype.type(1 - self.slope)
            scale += gy.dtype.type(self.slope)
            if not recorded:  # the product into the scale's own array, no Tensor op
                scale *= g
        if not recorded:
            return Tensor._wrap(scale, gy.device)
        return gy * Tensor._wrap(scale, gy.device)

    def _scale_spans(self, like, g):
        """The scale above (times g unless g is None) on one span of the leading axis per BLAS
        thread: the same passes, so the same numbers."""
        scale = numpy.empty_like(like)
        keep, leak = like.dtype.type(1 - self.slope), like.dtype.type(self.slope)

        def part(s):
            sc = scale[s]
            sc[...] = self.mask[s]  # the cast (a multiply of the bool mask is 1.4x slower)
            sc *= keep
            sc += leak
            if g is not None:
                sc *= g[s]

        _parallel.each_span(part, len(scale), scale.nbytes)
        return scale


def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return LeakyReLU(negative_slope)(x)


@_native_op
def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    neg = (exp(clip(x, None, 0.0)) - 1.0) * alpha
    return where(x > 0, x, neg)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x); `approximate="tanh"` uses the tanh form."""
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x * x * x)))
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * x * (1.0 + (x * (1.0 / math.sqrt(2.0))).erf())


def silu(x: Tensor) -> Tensor:
    return x * sigmoid(x)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return clip(x, min_val, max_val)


def relu6(x: Tensor) -> Tensor:
    return clip(x, 0.0, 6.0)


@_autocast_op("softplus")
def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear above `threshold` (PyTorch's rule)."""
    bx = x * beta if beta != 1.0 else x
    # log1p(exp(-|bx|)) + max(bx, 0) never overflows.
    soft = (exp(-abs(bx)).log1p() + relu(bx)) * (1.0 / beta)
    return where(bx > threshold, x, soft)


class LogSigmoid(Function):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), finite for every x."""

    def forward(self, x):
        xp = self.xp
        return (xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * sigmoid(-self.inputs[0])  # 1 - sigmoid(x)


def logsigmoid(x: Tensor) -> Tensor:
    return LogSigmoid()(x)


def hardsigmoid(x: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between."""
    return clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def hardswish(x: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return x * hardsigmoid(x)


@_native_op
def mish(x: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    return x * tanh(softplus(x))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@_native_op
def selu(x: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants of Klambauer et al. (2017)."""
    return elu(x, _SELU_ALPHA) * _SELU_SCALE


@_native_op
def celu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1))."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    neg = (exp(clip(x, None, 0.0) * (1.0 / alpha)) - 1.0) * alpha
    return where(x > 0, x, neg)


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return x / (abs(x) + 1.0)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), where a and b are the two halves of `input` along `dim`."""
    n = input.shape[dim] if input.ndim else 0
    if n % 2:
        raise RuntimeError(
            f"glu: halving dimension {dim} of a tensor of shape {input.shape} needs an even size"
        )
    a, b = input.split(n // 2, dim)
    return a * sigmoid(b)


@_autocast_op("prelu")
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x where x > 0, else weight * x; `weight` has one value or one per channel (dim 1)."""
    if weight.ndim > 1 or (weight.numel() != 1 and (input.ndim < 2 or
                                                    weight.numel() != input.shape[1])):  # fmt: skip
        raise RuntimeError(
            f"prelu: weight of shape {weight.shape} needs 1 element or one per channel of the "
            f"input of shape {input.shape} (dimension 1)"
        )
    if weight.numel() != 1:
        weight = weight.reshape((1, -1) + (1,) * (input.ndim - 2))
    elif weight.ndim:
        weight = weight.reshape(())
    return where(input > 0, input, input * weight)


class Softmax(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        z = x - x.max(axis=self.axis, keepdims=True)
        e = self.xp.exp(z)
        e /= e.sum(axis=self.axis, keepdims=True)
        return e

    def backward(self, gy):
        y = self.output()
        return y * (gy - sum(gy * y, self.axis, keepdim=True))


class LogSoftmax(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        z = x - x.max(axis=self.axis, keepdims=True)
        return z - self.xp.log(self.xp.exp(z).sum(axis=self.axis, keepdims=True))

    def backward(self, gy):
        y = self.output()
        return gy - exp(y) * sum(gy, self.axis, keepdim=True)


def _softmax_dim(x: Tensor, dim):
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return _norm_dim(dim, x.ndim)


@_autocast_op("softmax")
def softmax(x: Tensor, dim: int | None = None) -> Tensor:
    return Softmax(_softmax_dim(x, dim))(x)


@_autocast_op("log_softmax")
def log_softmax(x: Tensor, dim: int | None = None) -> Tensor:
    return LogSoftmax(_softmax_dim(x, dim))(x)


@_autocast_op("normalize")
def normalize(x: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    n = x.norm(p, dim, keepdim=True)
    return x / maximum(n, as_tensor(eps, like=x))


@_autocast_op("cosine_similarity")
def cosine_similarity(a: Tensor, b: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    num = sum(a * b, dim)
    den = maximum(a.norm(2, dim) * b.norm(2, dim), as_tensor(eps, like=a))
    return num / den


# Dropout -----------------------------------------------------------------------------------
@_on_device
def _dropout_mask(x: Tensor, p: float, shape) -> Tensor:
    keep = random.uniform(shape, numpy.float32, x.device) >= p
    return Tensor._wrap((keep * (1.0 / (1.0 - p))).astype(x.dtype), x.device)


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout(x: Tensor, p: float, training: bool, mask_shape) -> Tensor:
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if _on_kernel(x.xp, x.dtype) and tuple(mask_shape) == tuple(x.shape):
        return FusedDropout(p)(x)
    return x * _dropout_mask(x, p, mask_shape)


class FusedDropout(Function):
    """Elementwise inverted dropout on cuda in one kernel each way (kernels/cuda/activation.cu):
    the kernel draws its own counter-based numbers (engine.random.kernel_stream), and the
    backward regenerates the forward's mask from the same (key, offset), so nothing is kept.
    float16/bfloat16 are scaled in float32 and rounded once. A recorded backward stays in
    engine ops (a product with the mask, made by the kernel)."""

    saves_inputs = False

    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        from kernels import activation_gpu  # noqa: PLC0415 (CuPy only on cuda)

        self.stream = random.kernel_stream(self.device, x.size)
        return activation_gpu.dropout_apply(x, self.p, *self.stream)

    def backward(self, gy):
        from kernels import activation_gpu  # noqa: PLC0415

        if not _is_grad_enabled():
            return gy._new(activation_gpu.dropout_apply(gy.array, self.p, *self.stream), gy.device)
        ones = self.xp.ones(gy.shape, gy.dtype)
        mask = activation_gpu.dropout_apply(ones, self.p, *self.stream)
        return gy * Tensor._wrap(mask, gy.device)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
    _check_p(p)
    return _dropout(x, p, training, x.shape)


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) (or (C, H, W)) inputs."""
    _check_p(p)
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d expects a 3-D or 4-D input, got shape {x.shape}")
    return _dropout(x, p, training, x.shape[:-2] + (1, 1))


# Losses ------------------------------------------------------------------------------------
@_autocast_op("mse_loss")
def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _same_shape("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction)


@_autocast_op("l1_loss")
def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _same_shape("l1_loss", input, target)
    return _reduce(abs(input - target), reduction)


@_autocast_op("smooth_l1_loss")
def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0):
    _same_shape("smooth_l1_loss", input, target)
    d = abs(input - target)
    return _reduce(where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


@_autocast_op("binary_cross_entropy")
def binary_cross_entropy(input: Tensor, target: Tensor, weight=None, reduction: str = "mean"):
    """-(t log p + (1 - t) log(1 - p)), logs clamped at -100 as in PyTorch."""
    _same_shape("binary_cross_entropy", input, target)
    lo = -100.0
    loss = -(
        target * clip(log(input), lo, None) + (1.0 - target) * clip(log(1.0 - input), lo, None)
    )
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _log1p_unit(xp, e):
    """log1p of e in [0, 1] (NaN passes through) within 3.5 ulps, ~3x faster than NumPy's
    float32 log1p, which is not vectorised: log(u) - ((u - 1) - e) / u with u = 1 + e. The
    bracket is u's rounding error, exact (Sterbenz), and the first-order correction leaves an
    error of its square; where u rounds to 1 it gives e itself."""
    if xp is not numpy:
        return xp.log1p(e)
    one = e.dtype.type(1)
    u = e + one
    d = u - one
    d -= e
    d /= u
    r = numpy.log(u)
    r -= d
    return r


class BCEWithLogits(Function):
    """Elementwise max(x, 0) - x t + log1p(exp(-|x|)); gradient sigmoid(x) - t, exact at x = 0."""

    def forward(self, x, t):
        xp = self.xp
        self.e = xp.exp(-xp.abs(x))  # kept: the backward's sigmoid without another exp
        y = xp.maximum(x, 0) - x * t
        y += _log1p_unit(xp, self.e)
        return y

    def backward(self, gy):
        (x, t), g = self.operands(gy)  # one formula: Tensors when recorded, raw arrays otherwise
        gx = g * (self._sigmoid(x) - t) if self.inputs[0].requires_grad else None
        gt = -g * x if self.inputs[1].requires_grad else None
        return self.results(gy, gx, gt)

    def _sigmoid(self, x):
        """sigmoid(x): the engine op on a Tensor (differentiable again); on the raw array
        max(e, [x >= 0]) / (1 + e) from the forward's e = exp(-|x|), without another exp."""
        if isinstance(x, Tensor):
            return sigmoid(x)
        s = self.xp.maximum(self.e, x >= 0)
        s /= self.e + 1
        return s


class BCEWithLogitsReduced(Function):
    """The mean or sum of BCEWithLogits on cuda: one kernel forward (then the sum) and one
    backward (kernels/cuda/loss.cu), for a target that needs no gradient."""

    def __init__(self, target, mean: bool):
        self.target, self.mean = target, mean

    def forward(self, x):
        from kernels import loss_gpu  # noqa: PLC0415 (CuPy only on cuda)

        losses = loss_gpu.bce_logits_forward(x, self.target)
        return losses.mean() if self.mean else losses.sum()  # one reduction, divided in it

    def backward(self, gy):
        (x,) = self.inputs
        scale = 1.0 / x.numel() if self.mean else 1.0
        if not _is_grad_enabled():
            from kernels import loss_gpu  # noqa: PLC0415

            g = self.xp.ascontiguousarray(gy.array.reshape(1))
            return gy._new(loss_gpu.bce_logits_backward(x.array, self.target, g, scale), gy.device)
        # Recorded (create_graph=True): the same gradient in engine ops, differentiable again.
        return gy * scale * (sigmoid(x) - Tensor._wrap(self.target, x.device))


@_autocast_op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, weight=None, reduction: str = "mean", pos_weight=None
) -> Tensor:
    """BCE on logits: max(x, 0) - x t + log(1 + exp(-|x|)), finite for |x| = 1000."""
    _same_shape("binary_cross_entropy_with_logits", input, target)
    if (
        input.device.type == "cuda"
        and weight is None
        and pos_weight is None
        and reduction in ("mean", "sum")
        and input.dtype.name in ("float32", "float64")
        and target.dtype == input.dtype
        and not target.requires_grad
        and input.numel() > 0
    ):
        return BCEWithLogitsReduced(target.array, reduction == "mean")(input)
    if pos_weight is None:
        loss = BCEWithLogits()(input, target)
    else:
        softplus_neg_abs = exp(-abs(input)).log1p()
        # (1 - t) x + (1 + (pw - 1) t) * softplus(-x)
        log_weight = (pos_weight - 1.0) * target + 1.0
        loss = (1.0 - target) * input + log_weight * (softplus_neg_abs + relu(-input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@_on_device
def one_hot(target: Tensor, num_classes: int = -1) -> Tensor:
    t = target.array
    n = int(t.max()) + 1 if num_classes < 0 else num_classes
    xp = target.xp
    return Tensor._wrap((t[..., None] == xp.arange(n)).astype(numpy.int64), target.device)


def _classes_last(input: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N * d1 * ..., C); (N, C) unchanged."""
    if input.ndim <= 2:
        return input
    perm = (0,) + tuple(range(2, input.ndim)) + (1,)
    return input.permute(*perm).reshape(-1, input.shape[1])


# Up to this many rows, cross-entropy's reduction is one thread's loop (a few microseconds on
# a GPU, like a launch); a bigger batch sums in CuPy's parallel reductions.
_SMALL_BATCH = 4096


class CrossEntropy(Function):
    """Cross-entropy of logits (N, C) against int64 class indices, mean or sum, on cuda: one
    kernel forward (log-sum-exp, picked logit, row weights) and one backward
    (kernels/cuda/loss.cu) instead of log_softmax + nll's ~25."""

    def __init__(self, target, ignore_index: int, reduction: str):
        self.target, self.ignore_index, self.mean = target, ignore_index, reduction == "mean"

    def forward(self, x):
        from kernels import loss_gpu  # noqa: PLC0415 (CuPy only on cuda)

        self.x = x = self.xp.ascontiguousarray(x)
        out, self.lse = loss_gpu.cross_entropy_forward(x, self.target, self.ignore_index)
        self.valid = out[1]
        t, n, c, ignore = self.target, x.shape[0], x.shape[1], self.ignore_index
        error = lambda: _target_range_error(t, c, ignore)  # noqa: E731
        if n <= _SMALL_BATCH:  # the sums, the mean and the target check in one launch
            loss, aux = loss_gpu.cross_entropy_reduce(out, self.mean)
            self.count = aux[:1]
            _check_later(aux[1], error)
            return loss
        sums = out.sum(axis=1)  # [sum of the row losses, rows that count (> N: a bad target)]
        self.count = sums[1:]
        _check_later(sums[1] > n, error)
        return sums[0] / sums[1] if self.mean else sums[0]

    def backward(self, gy):
        if not _is_grad_enabled():
            from kernels import loss_gpu  # noqa: PLC0415

            g = self.xp.ascontiguousarray(gy.array.reshape(1))
            gx = loss_gpu.cross_entropy_backward(
                self.x, self.target, self.lse, g, self.count, self.ignore_index, self.mean
            )
            return gy._new(gx, gy.device)
        # Recorded (create_graph=True): the same gradient in engine ops, differentiable again.
        (x,) = self.inputs
        xp = self.xp
        rows = (self.valid == 1).astype(x.dtype)[:, None]
        onehot = (self.target[:, None] == xp.arange(x.shape[1])).astype(x.dtype) * rows
        rows, onehot = Tensor._wrap(rows, x.device), Tensor._wrap(onehot, x.device)
        scale = gy / Tensor._wrap(self.count.reshape(()), x.device) if self.mean else gy
        return (softmax(x, 1) * rows - onehot) * scale


def _target_range_error(t, n_classes: int, ignore_index: int) -> IndexError:
    kept = t[t != ignore_index]
    return IndexError(
        f"nll_loss: target values must be in [0, {n_classes}) (or ignore_index {ignore_index}), "
        f"got {int(kept.min())}..{int(kept.max())}"
    )


def _fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing) -> bool:
    """Whether `cross_entropy` takes the one-kernel cuda path (the common classifier case)."""
    return (
        input.device.type == "cuda"
        and input.ndim == 2
        and input.shape[1] > 0
        and input.dtype.name in ("float32", "float64")
        and target.dtype.kind in "iu"
        and target.shape == input.shape[:1]
        and weight is None
        and not label_smoothing
        and reduction in ("mean", "sum")
        and -(2**31) <= ignore_index < 2**31
    )


class NLLGather(Function):
    """-logp[i, target[i]] weighted, as one gather (forward) and one scatter (backward)."""

    saves_inputs = False

    def __init__(self, target, weight):
        self.target, self.weight = target, weight

    def forward(self, logp):
        xp = self.xp
        self.shape = logp.shape
        picked = xp.take_along_axis(logp, self.target[:, None], axis=1)[:, 0]
        return -picked * self.weight

    def backward(self, gy):
        return NLLScatter(self.target, self.weight, self.shape)(gy)


class NLLScatter(Function):
    saves_inputs = False

    def __init__(self, target, weight, shape):
        self.target, self.weight, self.shape = target, weight, shape

    def forward(self, gy):
        xp = self.xp
        g = xp.zeros(self.shape, dtype=gy.dtype)
        # Row-wise fancy assignment, not put_along_axis: CuPy 13 has no cupy.put_along_axis.
        g[xp.arange(g.shape[0]), self.target] = -gy * self.weight
        return g

    def backward(self, ggx):
        return NLLGather(self.target, self.weight)(ggx)


@_autocast_op("nll_loss")
@_on_device
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities (N, C) or (N, C, d...)."""
    if input.ndim == 1 and target.ndim == 0:  # one unbatched sample (C,)
        loss = nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction)
        return loss.reshape(()) if reduction == "none" else loss
    if input.ndim < 1 or target.shape != (input.shape[:1] + input.shape[2:]):
        raise ValueError(
            f"nll_loss: expected target of shape {input.shape[:1] + input.shape[2:]} for input of "
            f"shape {input.shape}, got {target.shape}"
        )
    if _kind(target.dtype) not in "iu":
        raise TypeError(f"nll_loss: target must hold class indices (integers), got {target.dtype}")
    logp = _classes_last(input)
    t = target.array.reshape(-1)
    xp = input.xp
    valid = t != ignore_index
    n_classes = logp.shape[1]
    safe_t = xp.where(valid, t, 0).astype(numpy.int64)
    if t.size:  # out of range: negative (huge as unsigned) or >= C; on cuda read later
        _check_later(
            safe_t.view(numpy.uint64).max() >= n_classes,
            lambda: _target_range_error(t, n_classes, ignore_index),
        )
    w = valid.astype(input.dtype)
    if weight is not None:
        w = w * weight.array[safe_t]
    loss = NLLGather(safe_t, w)(logp)
    if reduction == "mean":
        return sum(loss) / Tensor._wrap(w.sum(), input.device)
    if reduction == "none":
        return loss.reshape(target.shape)
    return _reduce(loss, reduction)


@_autocast_op("cross_entropy")
@_on_device
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """log_softmax + nll_loss; `target` holds class indices or class probabilities."""
    if input.ndim == 1:  # one unbatched sample (C,): as a batch of one
        loss = cross_entropy(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index,
            reduction,
            label_smoothing,
        )
        return loss.reshape(()) if reduction == "none" else loss
    if _fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
        t = input.xp.ascontiguousarray(target.array.astype(numpy.int64, copy=False))
        return CrossEntropy(t, ignore_index, reduction)(input)
    logp = log_softmax(input, 1)
    if _kind(target.dtype) == "f":
        _same_shape("cross_entropy", input, target)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / input.shape[1]
        w = 1.0 if weight is None else weight.reshape((-1,) + (1,) * (input.ndim - 2))
        return _reduce(-sum(logp * target * w, 1), reduction)
    loss = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return loss
    # PyTorch: (1 - eps) * nll + eps * mean over classes of -w_c log p_c, on non-ignored samples.
    n_classes = input.shape[1]  # input.ndim >= 2 here: a (C,) input became a batch of one
    shape = (-1,) + (1,) * (input.ndim - 2)
    weighted = logp if weight is None else logp * weight.reshape(shape)
    valid = Tensor._wrap((target.array != ignore_index).astype(input.dtype), input.device)
    smooth = -sum(weighted, 1) * valid * (1.0 / n_classes)
    if reduction == "mean":
        t = input.xp.where(target.array != ignore_index, target.array, 0)
        denom = valid.array.sum() if weight is None else (weight.array[t] * valid.array).sum()
        smooth = sum(smooth) / Tensor._wrap(denom, input.device)
    else:
        smooth = _reduce(smooth, reduction)
    return loss * (1.0 - label_smoothing) + smooth * label_smoothing


@_autocast_op("kl_div")
def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False):
    """KL(target || exp(input)) pointwise: target * (log target - input)."""
    if log_target:
        loss = exp(target) * (target - input)
    else:
        safe = where(target > 0, target, as_tensor(1.0, like=target))
        loss = target * (log(safe) - input)
    if reduction == "batchmean":
        return sum(loss) / input.shape[0]
    return _reduce(loss, reduction)


@_autocast_op("gaussian_nll_loss")
@_on_device
def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """PyTorch's Gaussian NLL: 0.5 (log max(var, eps) + (input - target)^2 / max(var, eps)).

    `var` is a float, input-shaped, one dim short of input, or input-shaped with exactly one
    mismatched dim of size 1 (one variance shared along it). As in PyTorch the clamp at `eps`
    does not stop the gradient: d/dvar is the formula's at the clamped value.
    """
    if not isinstance(var, Tensor):
        if var < 0:
            raise ValueError("gaussian_nll_loss: var has negative entries")
        var = full_like(input.detach(), var)
    if var.shape != input.shape:
        mismatched = [(a, b) for a, b in zip(input.shape, var.shape) if a != b]
        if var.shape == input.shape[:-1]:
            var = var.unsqueeze(-1)
        elif not (var.ndim == input.ndim and len(mismatched) == 1 and mismatched[0][1] == 1):
            raise ValueError(
                f"gaussian_nll_loss: var of shape {var.shape} does not broadcast "
                f"to input of shape {input.shape}"
            )
    if bool((var.array < 0).any()):
        raise ValueError("gaussian_nll_loss: var has negative entries")
    raw = var.detach()
    v = var + Tensor._wrap(var.xp.maximum(raw.array, eps) - raw.array, var.device)
    loss = 0.5 * (log(v) + (input - target) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    return weight[input]


from .ops.conv import *  # noqa: E402,F401,F403  (conv2d, pooling, interpolate)
from .ops.conv_family import *  # noqa: E402,F401,F403  (conv1d, 1-D pools, adaptive max, unpool)


# Attention and RMS normalisation ---------------------------------------------------------------
@_on_device
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dims (PyTorch's math path).

    A bool `attn_mask` marks the pairs that take part (False -> -inf), a float one is added;
    `is_causal` lets position i see keys j <= i; `dropout_p` drops attention weights (always,
    as torch's functional form does); `enable_gqa` shares each key/value head among
    query_heads / kv_heads query heads.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(
            f"scaled_dot_product_attention: expected (..., L, E) tensors, got {query.shape}, "
            f"{key.shape}, {value.shape}"
        )
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
            f"{value.shape} do not fit (..., L, E), (..., S, E), (..., S, Ev)"
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: give attn_mask or is_causal, not both")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        attn_mask = Tensor._wrap(query.xp.tri(L, S, dtype=bool), query.device)
    if attn_mask is not None:
        if attn_mask.dtype == numpy.bool_:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return matmul(weights, value)


@_native_op
def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps=None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing `normalized_shape` dims, times `weight`;
    `eps` defaults to the dtype's machine epsilon (as PyTorch)."""
    normalized_shape = (
        (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    )
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k :]) != normalized_shape:
        raise RuntimeError(
            f"rms_norm: input of shape {input.shape} does not end with normalized_shape "
            f"{normalized_shape}"
        )
    if eps is None:
        eps = float(numpy.finfo(input.dtype).eps)
    axes = tuple(range(input.ndim - k, input.ndim))
    # float16/bfloat16 in float32 (their squares overflow or lose the mean), and the result in
    # the input's dtype whatever the weight's, as PyTorch's
    x = input.float() if _is_low_precision(input.dtype) else input
    out = x * ((x * x).mean(axes, keepdim=True) + eps).rsqrt()
    out = out * weight if weight is not None else out
    return out if out.dtype == input.dtype else out.to(input.dtype)
