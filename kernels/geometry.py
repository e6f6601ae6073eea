"""The geometry of one convolution or pooling call: built and checked once, trusted below.

A :class:`Geometry` is the sweep of a (kh, kw) window with stride, padding and dilation over an
(N, C, H, W) input, giving an (N, K, OH, OW) output (K the output channels; C for pooling).
The op's entry (``engine.functional.conv2d``, ``conv_transpose2d``, ``max_pool2d``,
``avg_pool2d``) builds it with :func:`conv2d`, :func:`conv_transpose2d` or :func:`pool2d`, which
check every size and raise one clear error naming them; the Functions, the NumPy kernels and
the CUDA launches take the value and trust it. A 1-D op is the 2-D one on a size-1 height; a 3-D
op is checked by :func:`conv3d`, :func:`conv_transpose3d` or :func:`pool3d` with the same rules
(one tuple parser, one output-size rule, one pool padding rule, one divisor rule) and then runs
the 2-D ops over its depth windows (``engine/ops/conv_family.py``).

Every CUDA kernel in ``kernels/cuda/conv.cu`` and ``pool.cu`` takes the geometry's integers in
the one order of :data:`LAUNCH_FIELDS`, by those names (a test holds the .cu signatures to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy

IntPair = int | Sequence[int]

# The integer parameters of every conv/pool kernel, in this order, named as in the .cu files.
LAUNCH_FIELDS = ("N", "C", "H", "W", "OH", "OW", "kh", "kw", "sy", "sx", "ph", "pw", "dy", "dx")


class GeometryError(ValueError, RuntimeError):
    """Sizes that do not fit. A ValueError (NumPy's habit) that is also PyTorch's RuntimeError,
    so code written for either catches it."""


@dataclass(frozen=True)
class Geometry:
    """One window sweep: input (N, C, H, W) -> output (N, K, OH, OW); padding ph/pw on each side.

    ``groups`` splits the channels (conv); ``ceil_mode`` lets the last window overhang the
    bottom/right; ``count_include_pad`` and ``divisor_override`` are average pooling's divisor
    rule (:meth:`avg_divisors`).
    """

    N: int
    C: int
    H: int
    W: int
    K: int
    OH: int
    OW: int
    kh: int
    kw: int
    sy: int = 1
    sx: int = 1
    ph: int = 0
    pw: int = 0
    dy: int = 1
    dx: int = 1
    groups: int = 1
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int = 0  # 0: none

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.OH, self.OW)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        """A conv's weight (C_out, C/groups, kh, kw)."""
        return (self.K, self.C // self.groups, self.kh, self.kw)

    @property
    def stride(self) -> tuple[int, int]:
        return (self.sy, self.sx)

    @property
    def padding(self) -> tuple[int, int]:
        return (self.ph, self.pw)

    @property
    def dilation(self) -> tuple[int, int]:
        return (self.dy, self.dx)

    def launch_ints(self) -> tuple[int, ...]:
        """The integers every conv/pool kernel takes, in :data:`LAUNCH_FIELDS` order."""
        return tuple(getattr(self, f) for f in LAUNCH_FIELDS)

    def far_padding(self) -> tuple[int, int]:
        """(bottom, right): padding after the image that the last window reaches (ceil mode
        can reach past ``ph``/``pw``; a window that ends inside the image needs none)."""
        bottom = max((self.OH - 1) * self.sy + self.dy * (self.kh - 1) + 1 - self.H - self.ph, 0)
        right = max((self.OW - 1) * self.sx + self.dx * (self.kw - 1) + 1 - self.W - self.pw, 0)
        return bottom, right

    def avg_divisors(self) -> numpy.ndarray | int:
        """Average pooling's divisor per window, PyTorch's rule: ``divisor_override`` if set;
        else the window clipped to the padded input (``count_include_pad``) or to the input
        itself. An int when it is the same for every window (kh * kw), else (OH, OW) float64.
        ``pool.cu``'s ``avg_pool_divisor`` is the same rule, held to this one by the tests."""
        if self.divisor_override:
            return self.divisor_override
        if self.count_include_pad and not self.ceil_mode:
            return self.kh * self.kw
        rows = window_lengths(self.OH, self.H, self.kh, self.sy, self.ph, self.count_include_pad)
        cols = window_lengths(self.OW, self.W, self.kw, self.sx, self.pw, self.count_include_pad)
        return numpy.outer(rows, cols).astype(numpy.float64)

    def indices(self, argmax: Any, xp: Any) -> Any:
        """Max pooling's window offsets ``ky*kw + kx`` -> PyTorch's ``return_indices``: int64
        flat indices into H*W (-1 stays -1, a window entirely in the padding)."""
        am = argmax.astype(xp.int64)
        row = xp.arange(self.OH, dtype=xp.int64).reshape(self.OH, 1) * self.sy - self.ph
        col = xp.arange(self.OW, dtype=xp.int64).reshape(1, self.OW) * self.sx - self.pw
        row = row + (am // self.kw) * self.dy
        col = col + (am % self.kw) * self.dx
        valid = am >= 0
        # Arithmetic instead of a masked store: -1 where no window element was valid.
        return (row * self.W + col) * valid - (~valid)


# Building and checking ------------------------------------------------------------------------
def ntuple(value: IntPair, n: int, name: str, minimum: int) -> tuple[int, ...]:
    """``3 -> (3,) * n``, an n-sequence -> its ints; a GeometryError for anything else or below
    ``minimum``. The one parser of kernel/stride/padding/dilation arguments, 1-D to 3-D."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            kind = "pair" if n == 2 else f"{n}-tuple"
            raise GeometryError(f"{name} must be an int or a {kind} of ints, got {value!r}")
        out = tuple(map(int, value))
    else:
        out = (int(value),) * n
    if min(out) < minimum:
        raise GeometryError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def pair(value: IntPair, name: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``: :func:`ntuple` for the 2-D ops."""
    return ntuple(value, 2, name, minimum)


def _groups(groups: Any) -> int:
    if int(groups) != groups or groups < 1:
        raise GeometryError(f"groups must be a positive int, got {groups!r}")
    return int(groups)


def out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool = False) -> int:
    """PyTorch's output length of a window sweep; in ceil mode the last window must start
    inside the input or its left padding. May be < 1 (the caller names the sizes)."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def transposed_size(n: int, k: int, s: int, p: int, d: int, output_padding: int = 0) -> int:
    """The output length of a transposed sweep (the input length of the conv it undoes)."""
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def window_lengths(O: int, n: int, k: int, s: int, p: int, count_include_pad: bool):
    """Average pooling's window length along one axis, (O,) ints: the window clipped to the
    padded input (``count_include_pad``) or to the input itself."""
    start = numpy.arange(O) * s - p
    end = numpy.minimum(start + k, n + p)
    if not count_include_pad:
        start, end = numpy.maximum(start, 0), numpy.minimum(end, n)
    return end - start


def _check_dims(name: str, shape: Sequence[int], layout: Sequence[str], what: str) -> tuple:
    """``shape`` as ints when it has one dim per name in ``layout`` ("NCHW"), else an error."""
    if len(shape) != len(layout):
        raise GeometryError(
            f"{name}: expected a {len(layout)}-D ({', '.join(layout)}) {what}, "
            f"got shape {tuple(shape)}"
        )
    return tuple(map(int, shape))


def check_4d(name: str, x_shape: Sequence[int], what: str = "input") -> tuple[int, ...]:
    return _check_dims(name, x_shape, "NCHW", what)


def _check_conv_channels(name: str, x_shape, w_shape, groups: int) -> None:
    """A conv's weight (C_out, C/groups, ...) against its input (N, C, ...)."""
    C, (Co, Cg) = int(x_shape[1]), map(int, w_shape[:2])
    if C % groups or Co % groups or Cg * groups != C:
        raise GeometryError(
            f"{name}: input of shape {tuple(x_shape)} has {C} channels and weight of shape "
            f"{tuple(w_shape)} expects {Cg} * groups={groups} = {Cg * groups} with C_out={Co}; "
            f"both channel counts must be divisible by groups"
        )


def _check_transpose_channels(name: str, x_shape, w_shape, groups: int) -> None:
    """A transposed conv's weight (C, C_out/groups, ...) against its input (N, C, ...)."""
    C, Ci = int(x_shape[1]), int(w_shape[0])
    if Ci != C or C % groups:
        raise GeometryError(
            f"{name}: input of shape {tuple(x_shape)} has {C} channels, weight of shape "
            f"{tuple(w_shape)} expects {Ci}; the channel count must be divisible by "
            f"groups={groups}"
        )


def _check_output_padding(name: str, op, s, d) -> None:
    for o, si, di in zip(op, s, d, strict=True):
        if o >= si and o >= di:
            raise GeometryError(
                f"{name}: output_padding {op} must be smaller than either stride {s} "
                f"or dilation {d}"
            )


def _check_pool_padding(name: str, kernel, p, d, dilated: bool = True) -> None:
    """PyTorch's rule: padding at most half the effective (dilated) window; its 3-D pools hold
    it to half the undilated window (``dilated=False``)."""
    for k, q, di in zip(kernel, p, d, strict=True):
        if q > ((di if dilated else 1) * (k - 1) + 1) // 2:
            raise GeometryError(
                f"{name}: pad should be at most half of {'effective ' if dilated else ''}kernel "
                f"size, but got pad={p}, kernel_size={kernel} and dilation={d}"
            )


def _check_out(name: str, out: tuple[int, int], x_shape, **params) -> None:
    if min(out) < 1:
        desc = ", ".join(f"{k}={v}" for k, v in params.items())
        raise GeometryError(
            f"{name}: output size {out} is too small for input of shape {tuple(x_shape)} ({desc})"
        )


def conv2d(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    name: str = "conv2d",
) -> Geometry:
    """The geometry of conv2d(x, w): x (N, C, H, W), w (C_out, C/groups, kh, kw)."""
    N, C, H, W = _check_dims(name, x_shape, "NCHW", "input")
    _check_dims(name, w_shape, ("C_out", "C/groups", "kh", "kw"), "weight")
    sy, sx = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dy, dx = pair(dilation, "dilation", 1)
    groups = _groups(groups)
    _check_conv_channels(name, x_shape, w_shape, groups)
    Co, _, kh, kw = map(int, w_shape)
    out = (out_size(H, kh, sy, ph, dy), out_size(W, kw, sx, pw, dx))
    _check_out(
        name, out, x_shape, kernel=(kh, kw), stride=(sy, sx), padding=(ph, pw), dilation=(dy, dx)
    )
    return Geometry(N, C, H, W, Co, *out, kh, kw, sy, sx, ph, pw, dy, dx, groups)


def same_padding(kernel: Sequence[int], dilation: IntPair) -> tuple[tuple[int, int], tuple]:
    """PyTorch's padding="same" for a stride-1 conv: ((ph, pw), (bottom, right)) with the
    symmetric part and the extra row/column an odd total puts at the bottom/right."""
    dil = pair(dilation, "dilation", 1)
    total = [d * (k - 1) for d, k in zip(dil, kernel, strict=True)]
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def string_padding(mode: str, stride: IntPair, name: str = "conv2d") -> None:
    """Checks a string padding: 'valid', or 'same' with stride 1."""
    if mode not in ("valid", "same"):
        raise GeometryError(
            f"{name}: padding must be an int, a pair, 'valid' or 'same', got {mode!r}"
        )
    if mode == "same" and pair(stride, "stride", 1) != (1, 1):
        raise GeometryError(f"{name}: padding='same' is not supported for strided convolutions")


def conv_transpose2d(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> tuple[Geometry, tuple[int, int]]:
    """conv_transpose2d(x, w), x (N, C, H, W), w (C, C_out/groups, kh, kw), is the input
    gradient of a conv of its output: returns that conv's geometry and the (bottom, right)
    zero rows/columns x needs to match its output (output_padding >= stride, allowed when the
    dilation is larger, gives the conv more outputs than x has)."""
    name = "conv_transpose2d"
    N, C, H, W = _check_dims(name, x_shape, "NCHW", "input")
    _check_dims(name, w_shape, ("C", "C_out/groups", "kh", "kw"), "weight")
    s = pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    op = pair(output_padding, "output_padding", 0)
    groups = _groups(groups)
    _check_transpose_channels(name, x_shape, w_shape, groups)
    _check_output_padding(name, op, s, d)
    Ci, Cog, kh, kw = map(int, w_shape)
    out = tuple(map(transposed_size, (H, W), (kh, kw), s, p, d, op))
    _check_out(
        name, out, x_shape, kernel=(kh, kw), stride=s, padding=p, dilation=d, output_padding=op
    )
    geo = conv2d((N, Cog * groups) + out, (Ci, Cog, kh, kw), s, p, d, groups, name)
    return geo, (geo.OH - H, geo.OW - W)


def pool2d(
    x_shape: Sequence[int],
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    name: str = "max_pool2d",
) -> Geometry:
    """The geometry of max/avg pooling over x (N, C, H, W); stride defaults to the kernel."""
    N, C, H, W = _check_dims(name, x_shape, "NCHW", "input")
    kernel = pair(kernel_size, "kernel_size", 1)
    s = kernel if stride is None or stride == [] else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    _check_pool_padding(name, kernel, p, d)
    if divisor_override is not None and divisor_override <= 0:
        raise GeometryError(f"divisor_override must be positive, got {divisor_override}")
    out = tuple(
        out_size(n, k, si, q, di, bool(ceil_mode))
        for n, k, si, q, di in zip((H, W), kernel, s, p, d, strict=True)
    )
    _check_out(name, out, x_shape, kernel_size=kernel, stride=s, padding=p, dilation=d)
    return Geometry(
        N, C, H, W, C, *out, *kernel, *s, *p, *d,
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
        divisor_override=int(divisor_override or 0),
    )  # fmt: skip


# 3-D ops: checked here by the same rules, then run as 2-D ops over the depth windows -----------
def conv3d(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, name: str = "conv3d"):
    """conv3d(x, w), x (N, C, D, H, W), w (C_out, C/groups, kd, kh, kw), checked as
    :func:`conv2d` checks a 2-D one: ``(stride, padding, dilation, out)`` triples, out the
    output's (OD, OH, OW)."""
    _check_dims(name, x_shape, "NCDHW", "input")
    _check_dims(name, w_shape, ("C_out", "C/groups", "kd", "kh", "kw"), "weight")
    s, p = ntuple(stride, 3, "stride", 1), ntuple(padding, 3, "padding", 0)
    d = ntuple(dilation, 3, "dilation", 1)
    _check_conv_channels(name, x_shape, w_shape, _groups(groups))
    out = tuple(map(out_size, x_shape[2:], w_shape[2:], s, p, d))
    _check_out(name, out, x_shape, kernel=tuple(w_shape[2:]), stride=s, padding=p, dilation=d)
    return s, p, d, out


def conv_transpose3d(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, name: str = "conv_transpose3d"):  # fmt: skip
    """conv_transpose3d(x, w), x (N, C, D, H, W), w (C, C_out/groups, kd, kh, kw), checked as
    :func:`conv_transpose2d` checks a 2-D one: ``(stride, padding, output_padding, dilation,
    out)``, out the output's (OD, OH, OW)."""
    _check_dims(name, x_shape, "NCDHW", "input")
    _check_dims(name, w_shape, ("C", "C_out/groups", "kd", "kh", "kw"), "weight")
    s, p = ntuple(stride, 3, "stride", 1), ntuple(padding, 3, "padding", 0)
    d, op = ntuple(dilation, 3, "dilation", 1), ntuple(output_padding, 3, "output_padding", 0)
    _check_transpose_channels(name, x_shape, w_shape, _groups(groups))
    _check_output_padding(name, op, s, d)
    out = tuple(map(transposed_size, x_shape[2:], w_shape[2:], s, p, d, op))
    _check_out(name, out, x_shape, kernel=tuple(w_shape[2:]), stride=s, padding=p, dilation=d,
               output_padding=op)  # fmt: skip
    return s, p, op, d, out


def pool3d(x_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
           name: str = "max_pool3d"):  # fmt: skip
    """Max/avg pooling over x (N, C, D, H, W), checked as :func:`pool2d` checks a 2-D one:
    ``(kernel, stride, padding, dilation, out)`` triples, out the output's (OD, OH, OW).
    PyTorch's 3-D pools hold the padding to half the undilated window."""
    _check_dims(name, x_shape, "NCDHW", "input")
    k = ntuple(kernel_size, 3, "kernel_size", 1)
    s = k if stride is None or stride == [] else ntuple(stride, 3, "stride", 1)
    p, d = ntuple(padding, 3, "padding", 0), ntuple(dilation, 3, "dilation", 1)
    _check_pool_padding(name, k, p, d, dilated=False)
    out = tuple(out_size(*a, bool(ceil_mode)) for a in zip(x_shape[2:], k, s, p, d))
    _check_out(name, out, x_shape, kernel_size=k, stride=s, padding=p, dilation=d)
    return k, s, p, d, out
