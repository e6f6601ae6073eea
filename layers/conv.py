"""Convolution layers over `engine.functional.conv2d` / `conv_transpose2d`; the 1-D layers are
the 2-D ones on a size-1 height (their weights stored 3-D, as PyTorch's)."""

from __future__ import annotations

import engine
import engine.functional as F
from engine import Tensor
from kernels.geometry import ntuple, pair, same_padding, string_padding, transposed_size

from . import init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _add_weight_and_bias(layer: Module, transposed: bool, bias: bool, device, dtype) -> None:
    """A conv layer's weight, (C_out, C_in/groups, *k) or transposed (C_in, C_out/groups, *k),
    and bias (C_out,) or None, initialised by ``layer.reset_parameters``: for every conv layer,
    1-D to 3-D. Checks the groups against the channels first (a layer's constructor error,
    before any input is seen)."""
    cin, cout, groups = layer.in_channels, layer.out_channels, layer.groups
    if groups <= 0:
        raise ValueError(f"groups must be a positive integer, got {groups}")
    if cin % groups or cout % groups:
        raise ValueError(
            f"in_channels ({cin}) and out_channels ({cout}) must both be divisible by groups "
            f"({groups})"
        )
    shape = (cin, cout // groups) if transposed else (cout, cin // groups)
    kw = {"device": device, "dtype": dtype}
    layer.weight = Parameter(engine.empty(*shape, *layer.kernel_size, **kw))
    layer.register_parameter("bias", Parameter(engine.empty(cout, **kw)) if bias else None)
    layer.reset_parameters()


class _ConvNd(Module):
    """Shared state: weight, bias and the PyTorch default initialisation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride,
        padding,
        dilation,
        transposed: bool,
        output_padding,
        groups: int,
        bias: bool,
        padding_mode: str,
        device,
        dtype,
    ) -> None:
        super().__init__()
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.dilation = pair(dilation, "dilation", 1)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", 0)
        self.output_padding = pair(output_padding, "output_padding", 0)
        self.transposed = transposed
        self.groups, self.padding_mode = groups, padding_mode
        _add_weight_and_bias(self, transposed, bias, device, dtype)

    def reset_parameters(self) -> None:
        """kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) bias, as in PyTorch."""
        init._linear_default_(self.weight, self.bias)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) into (N, C_out, H', W').

    `padding` is an int, a pair, "valid" or "same" (stride 1); `padding_mode` is "zeros",
    "reflect", "replicate" or "circular".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        if isinstance(padding, str):
            string_padding(padding, stride, "Conv2d")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            False,
            0,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self._pad_lr = self._explicit_padding()

    def _explicit_padding(self) -> tuple[int, ...]:
        """(left, right, top, bottom) as F.pad wants it; 'same' puts the odd pixel on the right."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (ph, pw), (bottom, right) = same_padding(self.kernel_size, self.dilation)
            return (pw, pw + right, ph, ph + bottom)
        ph, pw = self.padding
        return (pw, pw, ph, ph)

    def _padded(self, input: Tensor) -> tuple[Tensor, tuple[int, int] | str]:
        """The input and padding for F.conv2d: zero padding (also "same" and "valid") goes to
        F.conv2d, another padding_mode pads the input here first."""
        if self.padding_mode == "zeros":
            return input, self.padding
        return F.pad(input, self._pad_lr, mode=self.padding_mode), (0, 0)

    def forward(self, input: Tensor) -> Tensor:
        input, padding = self._padded(input)
        return F.conv2d(
            input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups
        )


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (the gradient of Conv2d w.r.t. its input), weight
    (C_in, C_out / groups, kh, kw); `output_size` in forward picks the output_padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"Only 'zeros' padding mode is supported for ConvTranspose2d, got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError("ConvTranspose2d does not accept string padding")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            True,
            output_padding,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )

    def _output_padding(self, input: Tensor, output_size) -> tuple[int, int]:
        if output_size is None:
            return self.output_padding
        size = tuple(output_size)[-2:]
        pads = []
        for i, want in enumerate(size):
            n = input.shape[-2 + i]
            s, p, d, k = self.stride[i], self.padding[i], self.dilation[i], self.kernel_size[i]
            smallest = transposed_size(n, k, s, p, d)
            if not smallest <= want < smallest + s:
                raise ValueError(
                    f"requested an output size of {size}, but valid sizes range from "
                    f"{smallest} to {smallest + s - 1} (for an input of {tuple(input.shape[-2:])})"
                )
            pads.append(want - smallest)
        return tuple(pads)

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        return F.conv_transpose2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )


def _single(value, name: str, minimum: int) -> int:
    return ntuple(value, 1, name, minimum)[0]


def _repr_1d(s: str) -> str:
    """The 2-D layer's repr with the size-1 height left out: (1, 3) -> (3,), (0, 2) -> (2,)."""
    import re

    return re.sub(r"\((?:1|0), (\d+)\)", r"(\1,)", s)


class Conv1d(Conv2d):
    """1-D convolution of (N, C_in, L) into (N, C_out, L'), weight (C_out, C_in/groups, k):
    Conv2d on a size-1 height (padding modes and "same"/"valid" included)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        pad = padding if isinstance(padding, str) else (0, _single(padding, "padding", 0))
        super().__init__(
            in_channels,
            out_channels,
            (1, _single(kernel_size, "kernel_size", 1)),
            (1, _single(stride, "stride", 1)),
            pad,
            (1, _single(dilation, "dilation", 1)),
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self.weight = Parameter(self.weight.detach().squeeze(2).clone())

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (2, 3):
            raise RuntimeError(f"Conv1d: expected a (C, L) or (N, C, L) input, got {input.shape}")
        input, padding = self._padded(input.unsqueeze(-2))
        weight = self.weight.unsqueeze(2)
        out = F.conv2d(input, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return out.squeeze(-2)

    def extra_repr(self) -> str:
        return _repr_1d(super().extra_repr())


class ConvTranspose1d(ConvTranspose2d):
    """Transposed 1-D convolution, weight (C_in, C_out/groups, k): ConvTranspose2d on a size-1
    height."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            (1, _single(kernel_size, "kernel_size", 1)),
            (1, _single(stride, "stride", 1)),
            (0, _single(padding, "padding", 0)),
            (0, _single(output_padding, "output_padding", 0)),
            groups,
            bias,
            (1, _single(dilation, "dilation", 1)),
            padding_mode,
            device,
            dtype,
        )
        self.weight = Parameter(self.weight.detach().squeeze(2).clone())

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        if input.ndim not in (2, 3):
            raise RuntimeError(
                f"ConvTranspose1d: expected a (C, L) or (N, C, L) input, got {input.shape}"
            )
        x = input.unsqueeze(-2)
        size = None if output_size is None else (1, tuple(output_size)[-1])
        out = F.conv_transpose2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(x, size),
            self.groups,
            self.dilation,
        )
        return out.squeeze(-2)

    def extra_repr(self) -> str:
        return _repr_1d(super().extra_repr())


class _Conv3dBase(Module):
    """Weight, bias and PyTorch's default initialisation for the 3-D convolutions."""

    def __init__(
        self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        transposed, device, dtype,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = ntuple(kernel_size, 3, "kernel_size", 1)
        self.stride, self.padding = ntuple(stride, 3, "stride", 1), ntuple(padding, 3, "padding", 0)
        self.dilation = ntuple(dilation, 3, "dilation", 1)
        _add_weight_and_bias(self, transposed, bias, device, dtype)

    def reset_parameters(self) -> None:
        init._linear_default_(self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class Conv3d(_Conv3dBase):
    """3-D convolution of (N, C_in, D, H, W), weight (C_out, C_in/groups, kd, kh, kw): the 2-D
    kernels over the depth windows (F.conv3d). padding_mode "zeros" only."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
        groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
    ) -> None:  # fmt: skip
        if padding_mode != "zeros" or isinstance(padding, str):
            raise NotImplementedError(
                "Conv3d: only padding_mode='zeros' with int padding is supported"
            )
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            False, device, dtype,
        )  # fmt: skip

    def forward(self, input: Tensor) -> Tensor:
        return F.conv3d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose3d(_Conv3dBase):
    """Transposed 3-D convolution, weight (C_in, C_out/groups, kd, kh, kw) (F.conv_transpose3d)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
        output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
        padding_mode: str = "zeros", device=None, dtype=None,
    ) -> None:  # fmt: skip
        if padding_mode != "zeros":
            raise ValueError(
                f"Only 'zeros' padding mode is supported for ConvTranspose3d, got {padding_mode!r}"
            )
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            True, device, dtype,
        )  # fmt: skip
        self.output_padding = ntuple(output_padding, 3, "output_padding", 0)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv_transpose3d(
            input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
            self.groups, self.dilation,
        )  # fmt: skip
