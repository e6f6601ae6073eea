"""Shape ops: reshape, transpose, broadcast, sum_to, indexing, concatenation, split, pad."""

from __future__ import annotations

import functools

import numpy

from .. import autocast_mode as _autocast
from ..autograd import Function
from ..determinism import add_at
from ..device import on_device
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase, promote_types, split_int_indices


def _norm_dim(dim: int, ndim: int) -> int:
    """`dim` in [0, ndim); a 0-d tensor takes dim 0 or -1 (as in PyTorch), normalised to 0."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"dimension {dim} out of range for a tensor of {ndim} dimensions "
            f"(expected in [{-n}, {n - 1}])"
        )
    return dim % n


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _view_of(out: TensorBase, x: TensorBase) -> TensorBase:
    """`out` shares `x`'s memory: give it `x`'s version counter (as PyTorch's views), so an
    in-place change through either one is caught by any backward that saved the other."""
    out._version = x._version
    return out


class Reshape(Function):
    saves_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return reshape(gy, self.in_shape)


def reshape(x: TensorBase, *shape) -> TensorBase:
    shape = _shape_arg(shape)
    if shape == x.shape:
        return x
    try:  # the array's own reshape validates the shape; no trial reshape beforehand
        out = Reshape(shape)(x)
    except ValueError:
        raise RuntimeError(
            f"shape {list(shape)} is invalid for input of size {x.array.size} (shape {x.shape})"
        ) from None
    return _view_of(out, x)


view = reshape


def flatten(x: TensorBase, start_dim: int = 0, end_dim: int = -1) -> TensorBase:
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _norm_dim(start_dim, x.ndim), _norm_dim(end_dim, x.ndim)
    shape = (
        x.shape[:s] + (int(numpy.prod(x.shape[s : e + 1], dtype=numpy.int64)),) + x.shape[e + 1 :]
    )
    return reshape(x, shape)


def unflatten(x: TensorBase, dim: int, sizes) -> TensorBase:
    d = _norm_dim(dim, x.ndim)
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1 :])


def squeeze(x: TensorBase, dim=None) -> TensorBase:
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = {_norm_dim(d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def unsqueeze(x: TensorBase, dim: int) -> TensorBase:
    d = _norm_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    saves_inputs = False

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        return permute(gy, *numpy.argsort(self.axes).tolist())


def permute(x: TensorBase, *dims) -> TensorBase:
    dims = _shape_arg(dims)
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute: got {len(dims)} dims for a tensor of {x.ndim} dimensions")
    axes = tuple(_norm_dim(d, x.ndim) for d in dims)
    if axes == tuple(range(x.ndim)):
        return x
    return _view_of(Permute(axes)(x), x)


def transpose(x: TensorBase, dim0: int = 0, dim1: int = 1) -> TensorBase:
    if x.ndim < 2:
        return x
    axes = list(range(x.ndim))
    a, b = _norm_dim(dim0, x.ndim), _norm_dim(dim1, x.ndim)
    axes[a], axes[b] = axes[b], axes[a]
    return permute(x, *axes)


def t(x: TensorBase) -> TensorBase:
    return transpose(x, 0, 1)


class BroadcastTo(Function):
    saves_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return self.xp.broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


def broadcast_to(x: TensorBase, shape) -> TensorBase:
    shape = tuple(shape)
    if x.shape == shape:
        return x
    try:
        numpy.broadcast_shapes(x.shape, shape)
    except ValueError:
        raise RuntimeError(f"cannot expand a tensor of shape {x.shape} to {shape}") from None
    return _view_of(BroadcastTo(shape)(x), x)


def expand(x: TensorBase, *sizes) -> TensorBase:
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(sizes))
    return broadcast_to(x, shape)


def expand_as(x: TensorBase, other: TensorBase) -> TensorBase:
    return broadcast_to(x, other.shape)


def _sum_to_array(xp, a, shape):
    """Sum a broadcast array back down to `shape` (undo broadcasting)."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1
    )
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    if lead:
        a = a.reshape(shape)
    return a


class SumTo(Function):
    saves_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return _sum_to_array(self.xp, x, self.shape)

    def backward(self, gy):
        return broadcast_to(gy, self.in_shape)


def sum_to(x: TensorBase, shape) -> TensorBase:
    """Sum `x` down to `shape`: the gradient of broadcasting."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return SumTo(shape)(x)


def reduce_to(value, shape, xp):
    """`sum_to` for a value of a backward written once (Function.operands): a Tensor or an array."""
    if isinstance(value, TensorBase):
        return sum_to(value, shape)
    return value if value.shape == tuple(shape) else _sum_to_array(xp, value, tuple(shape))


def _index_arrays(index):
    """Replace Tensors inside an index by their raw arrays."""
    if isinstance(index, TensorBase):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, TensorBase) else i for i in index)
    if isinstance(index, list):
        return numpy.asarray(index)
    return index


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


class GetItem(Function):
    saves_inputs = False

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape = x.shape
        return x[self.index]

    def backward(self, gy):
        return GetItemGrad(self.index, self.in_shape)(gy)


class GetItemGrad(Function):
    """Scatter-add of gradients into the indexed positions (repeated indices accumulate)."""

    saves_inputs = False

    def __init__(self, index, in_shape):
        self.index, self.in_shape = index, in_shape

    def forward(self, gy):
        gx = self.xp.zeros(self.in_shape, dtype=gy.dtype)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:
            add_at(self.xp, gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return getitem(ggx, self.index)


@on_device
def getitem(x: TensorBase, index) -> TensorBase:
    idx = _index_arrays(index)
    split = split_int_indices(idx)
    if split is not None:  # PyTorch's rule: the ints first, then the index arrays
        return getitem(getitem(x, split[0]), split[1])
    if x.device.type == "cuda":
        idx = _to_device_index(idx, x.xp)
    out = GetItem(idx)(x)
    return _view_of(out, x) if _is_basic(idx) else out


def _to_device_index(idx, xp):
    conv = lambda i: xp.asarray(i) if isinstance(i, numpy.ndarray) else i  # noqa: E731
    return tuple(conv(i) for i in idx) if isinstance(idx, tuple) else conv(idx)


class Concat(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.sizes = [x.shape[self.axis] for x in xs]
        return self.xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        return tuple(split(gy, self.sizes, self.axis))


def cat(tensors, dim: int = 0) -> TensorBase:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat() expects a non-empty list of tensors")
    ref = tensors[0]
    d = _norm_dim(dim, ref.ndim)
    for t_ in tensors[1:]:
        if t_.ndim != ref.ndim or any(
            a != b for i, (a, b) in enumerate(zip(t_.shape, ref.shape)) if i != d
        ):
            raise RuntimeError(
                f"cat: sizes of tensors must match except in dimension {dim}, got shapes "
                f"{[tuple(x.shape) for x in tensors]}"
            )
    dtype = functools.reduce(promote_types, [x.dtype for x in tensors])
    tensors = [x if x.dtype == dtype else x.to(dtype) for x in tensors]
    return Concat(d)(*tensors)


concat = cat


def stack(tensors, dim: int = 0) -> TensorBase:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack() expects a non-empty list of tensors")
    shapes = {tuple(x.shape) for x in tensors}
    if len(shapes) > 1:
        raise RuntimeError(f"stack expects each tensor to be equal size, got {sorted(shapes)}")
    d = _norm_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, d) for x in tensors], d)


class Split(Function):
    saves_inputs = False

    def __init__(self, sizes, axis):
        self.sizes, self.axis = sizes, axis

    def forward(self, x):
        bounds = numpy.cumsum(self.sizes)[:-1].tolist()
        return tuple(self.xp.split(x, bounds, axis=self.axis))

    def backward(self, *gys):
        return cat(list(gys), self.axis)


def split(x: TensorBase, split_size_or_sections, dim: int = 0):
    d = _norm_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split size must be positive, got {step}")
        sizes = [step] * (n // step) + ([n % step] if n % step else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise RuntimeError(f"split sizes {sizes} do not sum to the dimension's size {n}")
    if len(sizes) == 1:
        return (x,)
    return tuple(_view_of(p, x) for p in Split(sizes, d)(x))


def chunk(x: TensorBase, chunks: int, dim: int = 0):
    n = x.shape[_norm_dim(dim, x.ndim)]
    return split(x, -(-n // chunks), dim)


def unbind(x: TensorBase, dim: int = 0):
    d = _norm_dim(dim, x.ndim)
    return tuple(squeeze(p, d) for p in split(x, 1, d))


def repeat(x: TensorBase, *sizes) -> TensorBase:
    """PyTorch's `repeat`: tile the tensor `sizes` times along each dimension."""
    sizes = _shape_arg(sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError("number of repeat dims can not be smaller than number of tensor dims")
    x = reshape(x, (1,) * (len(sizes) - x.ndim) + x.shape)
    # Insert a broadcast axis before each dim, expand it, then merge: all differentiable.
    inter = []
    for s in x.shape:
        inter += [1, s]
    target = []
    for r, s in zip(sizes, x.shape):
        target += [r, s]
    y = broadcast_to(reshape(x, inter), target)
    return reshape(y, tuple(r * s for r, s in zip(sizes, x.shape)))


def tile(x: TensorBase, dims) -> TensorBase:
    dims = tuple(dims)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


def _pad_pairs(pad, ndim):
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad must have an even length of at most 2*ndim, got {pad}")
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return pairs


class ConstantPad(Function):
    saves_inputs = False

    def __init__(self, pairs, value):
        self.pairs, self.value = pairs, value

    def forward(self, x):
        return self.xp.pad(x, self.pairs, mode="constant", constant_values=self.value)

    def backward(self, gy):
        index = tuple(slice(lo, gy.shape[i] - hi) for i, (lo, hi) in enumerate(self.pairs))
        return getitem(gy, index)


def pad(x: TensorBase, pad, mode: str = "constant", value: float = 0.0) -> TensorBase:
    """PyTorch's `F.pad`: `pad` lists (left, right) pairs starting from the last dimension."""
    pairs = _pad_pairs(pad, x.ndim)
    if mode == "constant":
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            index = tuple(
                slice(max(-lo, 0), x.shape[i] - max(-hi, 0)) for i, (lo, hi) in enumerate(pairs)
            )
            x = getitem(x, index)
            pairs = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
        return ConstantPad(pairs, value)(x)
    if mode in ("reflect", "replicate") and _autocast.is_active():
        # PyTorch's CPU autocast list runs reflection_pad1d/2d and replication_pad1d/2d/3d in
        # float32 (its circular pad is a composite of cat, on no list).
        if len(pad) // 2 <= (2 if mode == "reflect" else 3):
            name = "reflection_pad" if mode == "reflect" else "replication_pad"
            (x,) = _autocast.cast_inputs(name, x)
    if mode in ("reflect", "replicate", "circular"):
        # A gather with reflected/clamped/wrapped indices: its gradient is the matching scatter-add.
        index = []
        for i, (lo, hi) in enumerate(pairs):
            n = x.shape[i]
            if mode == "reflect" and (lo >= n or hi >= n):
                raise ValueError(
                    f"reflect padding ({lo}, {hi}) must be smaller than the dimension's size {n}"
                )
            pos = numpy.arange(-lo, n + hi)
            if mode == "circular":
                pos = _circular_positions(n, lo, hi)
            elif mode == "reflect":
                period = 2 * (n - 1) if n > 1 else 1
                pos = numpy.abs(pos) % period
                pos = numpy.where(pos >= n, period - pos, pos)
            elif mode == "replicate":
                pos = numpy.clip(pos, 0, n - 1)
            shape = [1] * x.ndim
            shape[i] = len(pos)
            index.append(pos.reshape(shape))
        return getitem(x, tuple(index))
    raise ValueError(
        f"unknown padding mode {mode!r}: expected constant, reflect, replicate, circular"
    )


def _circular_positions(n: int, lo: int, hi: int) -> numpy.ndarray:
    """Source positions of circular padding by (lo, hi) of a dimension of size n.

    As in PyTorch, negative pads crop first and positive pads wrap around what is left, so a
    pad may not exceed the cropped size (it would wrap more than once).
    """
    start, stop = max(-lo, 0), n - max(-hi, 0)
    kept = stop - start
    if max(lo, hi) > kept or n + lo + hi < 0:
        raise ValueError(
            f"circular padding ({lo}, {hi}) of a dimension of size {n} wraps around more than "
            f"once: each pad must be at most the size left after negative pads ({max(kept, 0)})"
        )
    lo, hi = max(lo, 0), max(hi, 0)
    return start + numpy.arange(-lo, kept + hi) % max(kept, 1)


class AsType(Function):
    saves_inputs = False

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return astype(gy, self.in_dtype)


def astype(x: TensorBase, dtype) -> TensorBase:
    fn = AsType(numpy.dtype(dtype))
    if _kind(numpy.dtype(dtype)) not in "fc":
        fn.differentiable = False
    return fn(x)


_autocast._differentiable_cast = astype  # autocast's casts (it cannot import this module)


class ToDevice(Function):
    saves_inputs = False

    def __init__(self, device):
        self.target = device

    def forward(self, x):
        from ..device import cupy

        if self.target.type == "cpu":
            return cupy().asnumpy(x)
        cp = cupy()
        with cp.cuda.Device(self.target.index):
            # cupy.asarray would hand back an array of another GPU itself; copy() moves it
            return x.copy() if isinstance(x, cp.ndarray) else cp.asarray(x)

    def __call__(self, x):
        # The output lives on the target device, unlike other ops.
        out = super().__call__(x)
        self.source = x.device
        out._device = self.target
        return out

    def backward(self, gy):
        return to_device(gy, self.source)


def to_device(x: TensorBase, device) -> TensorBase:
    return ToDevice(device)(x)


class Clone(Function):
    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


def clone(x: TensorBase) -> TensorBase:
    return Clone()(x)


def flip(x: TensorBase, dims) -> TensorBase:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    axes = [_norm_dim(d, x.ndim) for d in dims]
    repeated = sorted({a for a in axes if axes.count(a) > 1})
    if repeated:
        raise RuntimeError(f"flip: dim {repeated[0]} appears multiple times in dims {dims}")
    if x.ndim == 0:  # flip(0) of a 0-d tensor: nothing to reverse
        return clone(x)
    index = [slice(None)] * x.ndim
    for a in axes:
        index[a] = slice(None, None, -1)
    return getitem(x, tuple(index))


__all__ = [
    "reshape",
    "view",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "t",
    "broadcast_to",
    "expand",
    "expand_as",
    "sum_to",
    "getitem",
    "cat",
    "concat",
    "stack",
    "split",
    "chunk",
    "unbind",
    "repeat",
    "tile",
    "pad",
    "astype",
    "to_device",
    "clone",
    "flip",
]
