"""The geometry of one convolution or pooling call: built and checked once, trusted below.

A :class:`Geometry` is the sweep of a (kh, kw) window with stride, padding and dilation over an
(N, C, H, W) input, giving an (N, K, OH, OW) output (K the output channels; C for pooling).
The op's entry (``engine.functional.conv2d``, ``conv_transpose2d``, ``max_pool2d``,
``avg_pool2d``) builds it with :func:`conv2d`, :func:`conv_transpose2d` or :func:`pool2d`, which
check every size and raise one clear error naming them; the Functions, the NumPy kernels and
the CUDA launches take the value and trust it. A 1-D or 3-D op can reuse it with size-1 dims.

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

        def lengths(O: int, n: int, k: int, s: int, p: int) -> numpy.ndarray:
            start = numpy.arange(O) * s - p
            end = numpy.minimum(start + k, n + p)
            if not self.count_include_pad:
                start, end = numpy.maximum(start, 0), numpy.minimum(end, n)
            return end - start

        rows = lengths(self.OH, self.H, self.kh, self.sy, self.ph)
        cols = lengths(self.OW, self.W, self.kw, self.sx, self.pw)
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
def pair(value: IntPair, name: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``; a GeometryError for anything else or below
    ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise GeometryError(f"{name} must be an int or a pair of ints, got {value!r}")
        out = (int(value[0]), int(value[1]))
    else:
        out = (int(value), int(value))
    if min(out) < minimum:
        raise GeometryError(f"{name} must be >= {minimum}, got {value!r}")
    return out


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


def check_4d(name: str, x_shape: Sequence[int], what: str = "input") -> tuple[int, ...]:
    if len(x_shape) != 4:
        raise GeometryError(
            f"{name}: expected a 4-D (N, C, H, W) {what}, got shape {tuple(x_shape)}"
        )
    return tuple(int(v) for v in x_shape)


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
    N, C, H, W = check_4d(name, x_shape)
    if len(w_shape) != 4:
        raise GeometryError(
            f"{name}: expected a 4-D weight (C_out, C/groups, kh, kw), got {tuple(w_shape)}"
        )
    sy, sx = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dy, dx = pair(dilation, "dilation", 1)
    groups = _groups(groups)
    Co, Cg, kh, kw = (int(v) for v in w_shape)
    if C % groups or Co % groups or Cg * groups != C:
        raise GeometryError(
            f"{name}: input of shape {tuple(x_shape)} has {C} channels and weight of shape "
            f"{tuple(w_shape)} expects {Cg} * groups={groups} = {Cg * groups} with C_out={Co}; "
            f"both channel counts must be divisible by groups"
        )
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
    N, C, H, W = check_4d(name, x_shape)
    if len(w_shape) != 4:
        raise GeometryError(
            f"{name}: expected a 4-D weight (C, C_out/groups, kh, kw), got {tuple(w_shape)}"
        )
    s = pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    op = pair(output_padding, "output_padding", 0)
    groups = _groups(groups)
    Ci, Cog, kh, kw = (int(v) for v in w_shape)
    if Ci != C or C % groups:
        raise GeometryError(
            f"{name}: input of shape {tuple(x_shape)} has {C} channels, weight of shape "
            f"{tuple(w_shape)} expects {Ci}; the channel count must be divisible by "
            f"groups={groups}"
        )
    for o, si, di in zip(op, s, d, strict=True):
        if o >= si and o >= di:
            raise GeometryError(
                f"{name}: output_padding {op} must be smaller than either stride {s} "
                f"or dilation {d}"
            )
    out = tuple(
        (n - 1) * si - 2 * pi + di * (k - 1) + o + 1
        for n, k, si, pi, di, o in zip((H, W), (kh, kw), s, p, d, op, strict=True)
    )
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
    N, C, H, W = check_4d(name, x_shape)
    kernel = pair(kernel_size, "kernel_size", 1)
    s = kernel if stride is None or stride == [] else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    for k, q, di in zip(kernel, p, d, strict=True):
        if q > (di * (k - 1) + 1) // 2:
            raise GeometryError(
                f"{name}: pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={kernel} and dilation={d}"
            )
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
