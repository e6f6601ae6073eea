"""Normalisation layers: `BatchNorm1d/2d`, `LayerNorm`, `GroupNorm`, `InstanceNorm2d`.

All are written in engine ops, so their gradients (and second derivatives, for gradient
penalties) come from the tape. Per-channel quantities are folded into one scale and one shift
before touching the full-size tensor.
"""

from __future__ import annotations

import math

import engine
import engine.functional as F
from engine import Tensor
from engine.autocast_mode import autocast_op as _autocast_op
from engine.dtypes import is_low_precision as _low
from engine.dtypes import kind as _kind
from engine.ops.norm import batch_norm_train, sync_batch_norm_train, update_running

from . import init
from .module import Module, Parameter

__all__ = [
    "batch_norm",
    "layer_norm",
    "group_norm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm3d",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "InstanceNorm2d",
    "SyncBatchNorm",
]


def _channel_shape(input: Tensor) -> tuple[int, ...]:
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """PyTorch's `F.batch_norm` over dim 1 of (N, C, ...).

    Training normalises by the batch mean and biased variance and moves the running statistics
    toward the batch mean and the *unbiased* variance; otherwise it uses the running statistics.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm expects an input of shape (N, C, ...), got {input.shape}")
    channels = input.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and t.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} of shape {t.shape} does not match the "
                f"{channels} channels of input {input.shape}"
            )
    shape = _channel_shape(input)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        n = input.numel() // channels
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, "
                f"got input size {input.shape}"
            )
        if _kind(input.dtype) == "f" and all(
            t is None or t.dtype == input.dtype or (_low(input.dtype) and t.dtype == "float32")
            for t in (weight, bias)
        ):  # one fused op (engine.ops.norm): ~3x fewer passes than the composition below;
            # float16/bfloat16 input with float32 parameters (autocast) too, output in the
            # input's dtype as PyTorch's
            out, _, _ = batch_norm_train(
                input, weight, bias, eps, running_mean, running_var, momentum
            )  # the running statistics move inside (in the forward kernel on cuda)
            return out
        mean = input.mean(axes, keepdim=True)
        centred = input - mean
        var = (centred * centred).mean(axes, keepdim=True)
        update_running(running_mean, mean.array, momentum)
        update_running(running_var, var.array, momentum, n / (n - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed in eval mode")
        centred = input - running_mean.reshape(shape)
        var = running_var.reshape(shape)
    scale = (var + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.reshape(shape)
    out = centred * scale
    return out + bias.reshape(shape) if bias is not None else out


@_autocast_op("layer_norm")
def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims (biased variance)."""
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k :]) != normalized_shape:
        raise ValueError(
            f"layer_norm: input of shape {input.shape} does not end with "
            f"normalized_shape {normalized_shape}"
        )
    axes = tuple(range(input.ndim - k, input.ndim))
    mean = input.mean(axes, keepdim=True)
    centred = input - mean
    var = (centred * centred).mean(axes, keepdim=True)
    out = centred * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    return out + bias if bias is not None else out


@_autocast_op("group_norm")
def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each sample over groups of channels (and all spatial positions)."""
    n, c = input.shape[:2]
    if c % num_groups:
        raise ValueError(f"group_norm: {c} channels are not divisible by {num_groups} groups")
    grouped = input.reshape(n, num_groups, -1)
    mean = grouped.mean(2, keepdim=True)
    centred = grouped - mean
    var = (centred * centred).mean(2, keepdim=True)
    out = (centred * (var + eps).rsqrt()).reshape(input.shape)
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out


def _register_affine(module: Module, affine: bool, bias: bool, shape: tuple, kw: dict) -> None:
    """Register `weight` (ones) and `bias` (zeros, if `bias`) of `shape`, or None placeholders."""
    weight = Parameter(engine.ones(*shape, **kw)) if affine else None
    module.register_parameter("weight", weight)
    bias_param = Parameter(engine.zeros(*shape, **kw)) if affine and bias else None
    module.register_parameter("bias", bias_param)


class _BatchNorm(Module):
    _dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        kw = {"device": device, "dtype": dtype}
        _register_affine(self, affine, bias, (num_features,), kw)
        if track_running_stats:
            self.register_buffer("running_mean", engine.zeros(num_features, **kw))
            self.register_buffer("running_var", engine.ones(num_features, **kw))
            self.register_buffer(
                "num_batches_tracked", engine.zeros((), dtype="int64", device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in self._dims:
            raise ValueError(
                f"{type(self).__name__}: expected {' or '.join(map(str, self._dims))}"
                f"-D input, got shape {input.shape}"
            )
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): input of shape "
                f"{input.shape} has {input.shape[1]} channels"
            )

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs per channel."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs per channel."""

    _dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation of (N, C, D, H, W) inputs per channel."""

    _dims = (5,)


class _InstanceNorm(_BatchNorm):
    """Normalise each (sample, channel) of (N, C, *spatial) over its `_spatial` trailing dims
    (unbatched (C, *spatial) too). PyTorch's defaults: no affine, no running statistics."""

    _spatial = 2

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias
        )

    def _check_input_dim(self, input: Tensor) -> None:
        name, k = type(self).__name__, self._spatial
        if input.ndim not in (k + 1, k + 2):
            raise ValueError(f"{name}: expected {k + 1}-D or {k + 2}-D input, got {input.shape}")
        if self.affine and input.shape[-k - 1] != self.num_features:
            raise ValueError(
                f"{name}({self.num_features}): input of shape {input.shape} "
                f"has {input.shape[-k - 1]} channels"
            )

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if input.ndim == self._spatial + 1:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        n, c = input.shape[:2]
        shape = _channel_shape(input)
        if not self.training and self.track_running_stats:
            mean = self.running_mean.reshape(shape)
            var = self.running_var.reshape(shape)
            out = (input - mean) * (var + self.eps).rsqrt()
        else:
            # Instance norm is batch norm of a (1, N*C, H, W) view; running stats average over N.
            flat = input.reshape(1, n * c, *input.shape[2:])
            out = batch_norm(flat, None, None, training=True, eps=self.eps).reshape(input.shape)
            if self.training and self.track_running_stats:
                self._track(input)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        return out

    def _track(self, input: Tensor) -> None:
        # As PyTorch's F.instance_norm: num_batches_tracked stays put, momentum=None means 0.1.
        factor = 0.1 if self.momentum is None else self.momentum
        axes = tuple(range(2, input.ndim))
        m = math.prod(input.shape[2:])
        with engine.no_grad():
            mean = input.mean(axes).mean(0)
            var = input.var(axes, unbiased=False).mean(0) * (m / max(m - 1, 1))
        update_running(self.running_mean, mean.array, factor)
        update_running(self.running_var, var.array, factor)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) (or (C, L)) over L."""

    _spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Normalise each (sample, channel) plane of (N, C, H, W) over H, W (CycleGAN's norm)."""

    _spatial = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of (N, C, D, H, W) (or (C, D, H, W)) over D, H, W."""

    _spatial = 3


class LayerNorm(Module):
    """Normalise over the trailing `normalized_shape` dims, with elementwise affine."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        kw = {"device": device, "dtype": dtype}
        _register_affine(self, elementwise_affine, bias, self.normalized_shape, kw)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """Normalise over groups of channels per sample, with per-channel affine."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
            )
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps, self.affine = eps, affine
        _register_affine(self, affine, bias, (num_channels,), {"device": device, "dtype": dtype})

    def forward(self, input: Tensor) -> Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) over the trailing `normalized_shape` dims, times `weight`
    (eps defaults to the input dtype's machine epsilon, as PyTorch)."""

    def __init__(
        self,
        normalized_shape,
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        weight = (
            Parameter(engine.ones(*self.normalized_shape, device=device, dtype=dtype))
            if elementwise_affine
            else None
        )
        self.register_parameter("weight", weight)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, input: Tensor) -> Tensor:
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation whose training statistics span every rank of the process group.

    With DistributedDataParallel each rank sees only its shard of the batch; plain BatchNorm then
    normalises by per-rank statistics, which is a different (noisier) model than one process
    with the whole batch. SyncBatchNorm all-reduces the per-channel sum, sum of squares and count
    in the forward and the two gradient sums in the backward, so N ranks x batch b train like
    one process x batch N b (per-rank batch sizes may differ). Gradient penalties (WGAN-GP, R1:
    `create_graph=True`) differentiate through it across the ranks. Outside a process group, or
    in a world of one, or in eval mode, it is BatchNorm. Inputs (N, C, ...) of any rank >= 2.
    """

    _dims = (2, 3, 4, 5)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group  # PyTorch's argument; the one group is used

    def forward(self, input: Tensor) -> Tensor:
        from engine import distributed

        synced = distributed.is_initialized() and distributed.get_world_size() > 1
        if not (self.training and synced):
            return super().forward(input)
        self._check_input_dim(input)
        if self.weight is not None and self.weight.dtype != input.dtype:
            raise TypeError(
                f"SyncBatchNorm: input {input.dtype} and weight {self.weight.dtype} differ"
            )
        out, mean, var, count = sync_batch_norm_train(input, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum
            if factor is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
            xp = input.xp
            unbiased = var * (count / xp.maximum(count - 1, 1)).astype(var.dtype)
            update_running(self.running_mean, mean, factor)
            update_running(self.running_var, unbiased, factor)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """`module` with every BatchNorm1d/2d/3d (at any depth) replaced by a SyncBatchNorm that
        shares its parameters and buffers; a BatchNorm passed itself is returned converted."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d, BatchNorm3d)):
            sync = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
            )
            for name in ("weight", "bias"):
                if name in module._parameters:
                    sync.register_parameter(name, module._parameters[name])
            for name, buf in module._buffers.items():
                sync.register_buffer(name, buf)
            sync.train(module.training)
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    module._modules[name] = converted
        return module
