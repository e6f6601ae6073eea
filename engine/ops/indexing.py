"""Indexing and selection: gather/scatter, index_select, masks, sort/topk, triangles, diagonals,
roll, repeat_interleave, windows (Tensor.unfold), meshgrid.

Most of these are gathers: they build one index tuple of device arrays and go through `getitem`,
whose backward is the matching scatter-add, so their gradients (and gradients of gradients) come
for free. The scatters are Functions whose backwards are gathers.
"""

from __future__ import annotations

import numpy

from ..autograd import Function, is_grad_enabled
from ..determinism import add_at
from ..device import on_device
from ..dtypes import is_low_precision
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase
from .math import where
from .reduction import ValuesIndices
from .shape import GetItemGrad, _norm_dim, broadcast_to, flatten, getitem, permute, reshape


def _index_array(index, x: TensorBase, what: str):
    """`index`'s raw int64 array on `x`'s device; a clear error for a wrong dtype or device."""
    if not isinstance(index, TensorBase):
        index = x._operand(numpy.asarray(index))
    if index.dtype != numpy.int64:
        raise RuntimeError(f"{what}(): expected an int64 index tensor, got {index.dtype}")
    if index.device != x.device:
        raise RuntimeError(
            f"{what}(): index is on {index.device}, the input on {x.device}; move one of them"
        )
    return index.array


def _check_bounds(idx, size: int, what: str, allow_negative: bool = False) -> None:
    """IndexError for an index outside [0, size) (or [-size, size)), as PyTorch raises.

    Only on the CPU: on the GPU the check would need a device-to-host sync per call (PyTorch
    asserts inside its kernel instead); CuPy wraps such indices around.
    """
    if not isinstance(idx, numpy.ndarray) or idx.size == 0:
        return
    lo, hi = int(idx.min()), int(idx.max())
    if hi >= size or lo < (-size if allow_negative else 0):
        bad = hi if hi >= size else lo
        raise IndexError(f"{what}(): index {bad} is out of bounds for dimension with size {size}")


def _along(idx, dim: int, xp) -> tuple:
    """The full index tuple that picks `x[i_0, ..., idx[i], ..., i_n]` for each position i of
    `idx` (PyTorch's gather/scatter addressing): aranges on the other axes, `idx` on `dim`."""
    out = []
    for d, n in enumerate(idx.shape):
        if d == dim:
            out.append(idx)
        else:
            shape = [1] * idx.ndim
            shape[d] = n
            out.append(xp.arange(n).reshape(shape))
    return tuple(out)


def _check_gather_shapes(x: TensorBase, idx, dim: int, what: str, other=None) -> None:
    if idx.ndim != x.ndim:
        raise RuntimeError(
            f"{what}(): index has {idx.ndim} dimensions, the input {x.ndim} (shape {x.shape}); "
            "they must have the same number"
        )
    for d in range(x.ndim):
        if d != dim and idx.shape[d] > x.shape[d]:
            raise RuntimeError(
                f"{what}(): index shape {idx.shape} is larger than the input's {x.shape} in "
                f"dimension {d}"
            )
        if other is not None and idx.shape[d] > other.shape[d]:
            raise RuntimeError(
                f"{what}(): index shape {idx.shape} is larger than src's {other.shape} in "
                f"dimension {d}"
            )


# Gathers --------------------------------------------------------------------------------------
@on_device
def gather(input: TensorBase, dim: int, index: TensorBase) -> TensorBase:
    """out[i][j][k] = input[index[i][j][k]][j][k] (dim=0); the output has index's shape."""
    d = _norm_dim(dim, input.ndim)
    idx = _index_array(index, input, "gather")
    _check_gather_shapes(input, idx, d, "gather")
    _check_bounds(idx, input.shape[d] if input.ndim else 1, "gather")
    if input.ndim == 0:
        return reshape(input, idx.shape)
    return getitem(input, _along(idx, d, input.xp))


@on_device
def take_along_dim(input: TensorBase, indices: TensorBase, dim: int | None = None) -> TensorBase:
    """Values of `input` at `indices` along `dim` (the flattened input when `dim` is None);
    the other dimensions broadcast, as in PyTorch."""
    if dim is None:
        return gather(flatten(input), 0, flatten(indices))
    d = _norm_dim(dim, input.ndim)
    idx = _index_array(indices, input, "take_along_dim")
    if idx.ndim != input.ndim:
        raise RuntimeError(
            f"take_along_dim(): input and indices should have the same number of dimensions, "
            f"got {input.ndim} and {idx.ndim}"
        )
    xs, ids = list(input.shape), list(idx.shape)
    xs[d] = ids[d] = 1
    common = numpy.broadcast_shapes(tuple(xs), tuple(ids))
    in_shape = tuple(input.shape[d] if i == d else s for i, s in enumerate(common))
    ix_shape = tuple(idx.shape[d] if i == d else s for i, s in enumerate(common))
    x = broadcast_to(input, in_shape)
    return gather(x, d, input._new(input.xp.broadcast_to(idx, ix_shape), input.device))


def index_select(input: TensorBase, dim: int, index: TensorBase) -> TensorBase:
    """The entries of `input` along `dim` listed by the 1-D (or 0-d) `index`."""
    d = _norm_dim(dim, input.ndim)
    idx = _index_array(index, input, "index_select")
    if idx.ndim > 1:
        raise IndexError(f"index_select(): index must be 1-D or 0-d, got shape {idx.shape}")
    _check_bounds(idx, input.shape[d] if input.ndim else 1, "index_select")
    if input.ndim == 0:
        return reshape(input, idx.reshape(-1).shape)
    return getitem(input, (slice(None),) * d + (idx.reshape(-1),))


@on_device
def masked_select(input: TensorBase, mask: TensorBase) -> TensorBase:
    """The 1-D tensor of `input`'s elements where the boolean `mask` holds (both broadcast)."""
    m = mask.array if isinstance(mask, TensorBase) else input.xp.asarray(mask)
    if m.dtype != numpy.bool_:
        raise RuntimeError(f"masked_select(): expected a bool mask, got {m.dtype}")
    shape = numpy.broadcast_shapes(input.shape, m.shape)
    return getitem(broadcast_to(input, shape), input.xp.broadcast_to(m, shape))


@on_device
def masked_fill(input: TensorBase, mask: TensorBase, value) -> TensorBase:
    """`input` with `value` where the boolean `mask` holds (differentiable in a 0-d tensor
    `value` too); the output keeps `input`'s shape and dtype."""
    m = mask.array if isinstance(mask, TensorBase) else input.xp.asarray(mask)
    if m.dtype != numpy.bool_:
        raise RuntimeError(f"masked_fill(): expected a bool mask, got {m.dtype}")
    try:
        fits = numpy.broadcast_shapes(input.shape, m.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise RuntimeError(
            f"masked_fill(): mask of shape {m.shape} does not broadcast to the input's "
            f"{input.shape}"
        )
    if isinstance(value, TensorBase):
        if value.ndim:
            raise RuntimeError(
                f"masked_fill(): only a 0-d value tensor is supported, got shape {value.shape}"
            )
        v = value.to(input.dtype)
    else:
        v = input._new(input.xp.asarray(value, dtype=input.dtype), input.device)
    return where(input._new(m, input.device), v, input)


@on_device
def nonzero(input: TensorBase, *, as_tuple: bool = False):
    """Indices of the non-zero elements: an (n, ndim) int64 tensor, or one 1-D tensor per
    dimension with `as_tuple=True` (a device-to-host sync on the GPU, as in PyTorch)."""
    xp, a = input.xp, input.array
    if a.ndim == 0:
        a = a.reshape(1)
        if as_tuple:
            return (input._new(xp.nonzero(a)[0].astype(numpy.int64), input.device),)
        return input._new(xp.zeros((int(bool(a[0])), 0), numpy.int64), input.device)
    found = [i.astype(numpy.int64) for i in xp.nonzero(a)]
    if as_tuple:
        return tuple(input._new(i, input.device) for i in found)
    return input._new(xp.stack(found, axis=1), input.device)


# Sorting --------------------------------------------------------------------------------------
def _argsort(x: TensorBase, d: int, descending: bool):
    """Stable argsort along `d` (NaN sorts as the largest value, as in PyTorch)."""
    xp, a = x.xp, x.array
    if not descending:
        return xp.argsort(a, axis=d, kind="stable")
    # Descending and still stable: sort the reversed array ascending, then reverse the result
    # and map the positions back (ties keep their original order).
    n = a.shape[d]
    return (n - 1) - xp.flip(xp.argsort(xp.flip(a, d), axis=d, kind="stable"), d)


@on_device
def argsort(input: TensorBase, dim: int = -1, descending: bool = False, stable: bool = False):
    """int64 indices that sort `input` along `dim` (always stable here)."""
    if input.ndim == 0:
        return input._new(input.xp.zeros((), numpy.int64), input.device)
    d = _norm_dim(dim, input.ndim)
    return input._new(_argsort(input, d, descending).astype(numpy.int64), input.device)


def sort(input: TensorBase, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) of `input` sorted along `dim`; values carry the gradient."""
    idx = argsort(input, dim, descending, stable)
    if input.ndim == 0:
        return ValuesIndices(input, idx)
    return ValuesIndices(gather(input, dim, idx), idx)


@on_device
def topk(input: TensorBase, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """(values, indices) of the `k` largest (or smallest) entries along `dim`."""
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d] if input.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk(): k={k} is out of range for dimension {dim} of size {n}")
    if input.ndim == 0:
        return ValuesIndices(input, input._new(input.xp.zeros((), numpy.int64), input.device))
    xp, a = input.xp, input.array
    if 0 < k < n:  # select the k first (O(n)), then sort only those
        part = xp.argpartition(a, n - k if largest else k - 1, axis=d)
        keep = slice(n - k, n) if largest else slice(0, k)
        part = part[(slice(None),) * d + (keep,)]
        picked = input._new(xp.take_along_axis(a, part, axis=d), input.device)
        idx = xp.take_along_axis(part, _argsort(picked, d, descending=largest), axis=d)
    else:
        idx = _argsort(input, d, descending=largest)[(slice(None),) * d + (slice(0, k),)]
    idx = input._new(idx.astype(numpy.int64), input.device)
    return ValuesIndices(gather(input, d, idx), idx)


# Scatters -------------------------------------------------------------------------------------
class Scatter(Function):
    """out = input with `src` written at the addressed positions (the last write wins where
    `index` repeats a position, as PyTorch on the CPU: the result is unspecified there)."""

    saves_inputs = False

    def __init__(self, where_):
        self.where_ = where_  # the full index tuple (see _along)

    def forward(self, x, src):
        out = x.copy()
        out[self.where_] = src
        return out

    def backward(self, gy):
        zeros = gy._new(gy.xp.zeros(_shape_of(self.where_), gy.dtype), gy.device)
        return Scatter(self.where_)(gy, zeros), getitem(gy, self.where_)


def _shape_of(where_) -> tuple:
    return tuple(numpy.broadcast_shapes(*[w.shape for w in where_]))


class ScatterAdd(Function):
    """out = input plus `src` added at the addressed positions (repeats accumulate)."""

    saves_inputs = False

    def __init__(self, where_):
        self.where_ = where_

    def forward(self, x, src):
        out = x.copy()
        add_at(self.xp, out, self.where_, src)
        return out

    def backward(self, gy):
        return gy, getitem(gy, self.where_)


def _scatter_src(input: TensorBase, src, idx, what: str) -> TensorBase:
    """`src` cut to `index`'s shape (PyTorch reads only src's leading part), in input's dtype."""
    if not isinstance(src, TensorBase):
        return input._new(input.xp.full(idx.shape, src, dtype=input.dtype), input.device)
    if src.device != input.device:
        raise RuntimeError(f"{what}(): src is on {src.device}, the input on {input.device}")
    if src.dtype != input.dtype:
        raise RuntimeError(
            f"{what}(): expected src and input to have the same dtype, got {src.dtype} and "
            f"{input.dtype}"
        )
    if src.shape != idx.shape:
        src = getitem(src, tuple(slice(0, n) for n in idx.shape))
    return src


@on_device
def _scatter_args(input: TensorBase, dim: int, index, src, what: str):
    d = _norm_dim(dim, input.ndim)
    idx = _index_array(index, input, what)
    _check_gather_shapes(input, idx, d, what, src if isinstance(src, TensorBase) else None)
    _check_bounds(idx, input.shape[d] if input.ndim else 1, what)
    if input.ndim == 0:
        raise RuntimeError(f"{what}(): a 0-d input is not supported, reshape it to (1,)")
    return _along(idx, d, input.xp), _scatter_src(input, src, idx, what)


def scatter(input: TensorBase, dim: int, index: TensorBase, src=None, *, value=None, reduce=None):
    """input with `src` (a tensor, or the scalar `value`) written at `index` along `dim`."""
    if reduce is not None:
        mode = {"add": "sum", "multiply": "prod"}.get(reduce)
        if mode is None:
            raise ValueError(f"scatter(): reduce must be 'add' or 'multiply', got {reduce!r}")
        return scatter_reduce(input, dim, index, src if src is not None else value, mode)
    if (src is None) == (value is None):
        raise TypeError("scatter(): give exactly one of src or value")
    where_, s = _scatter_args(input, dim, index, src if src is not None else value, "scatter")
    return Scatter(where_)(input, s)


def scatter_add(input: TensorBase, dim: int, index: TensorBase, src: TensorBase) -> TensorBase:
    """input with `src` added at `index` along `dim` (repeated indices accumulate)."""
    where_, s = _scatter_args(input, dim, index, src, "scatter_add")
    return ScatterAdd(where_)(input, s)


_REDUCES = ("sum", "prod", "mean", "amax", "amin")


class ScatterReduce(Function):
    """Reduce `src` into `input` at the addressed positions with sum/prod/mean/amax/amin,
    `input`'s own value joining the reduction when `include_self`."""

    def __init__(self, where_, reduce, include_self):
        self.where_, self.reduce, self.include_self = where_, reduce, include_self

    def _counts(self, x):
        """How many values each position of the output reduces (input's own included)."""
        xp = self.xp
        c = xp.ones(x.shape, x.dtype) if self.include_self else xp.zeros(x.shape, x.dtype)
        add_at(xp, c, self.where_, xp.ones(_shape_of(self.where_), x.dtype))
        return c

    def forward(self, x, src):
        xp, w, r = self.xp, self.where_, self.reduce
        out = x.copy()
        if not self.include_self:
            identity = {"sum": 0, "mean": 0, "prod": 1}.get(r)
            if identity is None:  # amax / amin start from the dtype's lowest / highest value
                identity = -numpy.inf if r == "amax" else numpy.inf
                if _kind(x.dtype) != "f":
                    info = numpy.iinfo(x.dtype) if x.dtype.kind in "iu" else None
                    identity = (info.min if r == "amax" else info.max) if info else r == "amin"
            out[w] = identity
        if r in ("sum", "mean"):
            add_at(xp, out, w, src)
            if r == "mean":
                c = self._counts(x)
                out = xp.where(c > 0, out / xp.maximum(c, 1), x).astype(x.dtype, copy=False)
        elif r in ("amax", "amin"):
            out = self._extreme_at(out, src)
        elif xp is numpy:
            numpy.multiply.at(out, w, src)
        else:
            out = self._prod_by_logs(out, src)
        return out

    def _extreme_at(self, out, src):
        """maximum.at / minimum.at into `out`. CuPy's have no float16/bfloat16 (no such
        atomics): there in float32 copies, rounded back, exact for a max/min of values the low
        dtype holds (NaN and infinities included)."""
        xp = self.xp
        ufunc = xp.maximum if self.reduce == "amax" else xp.minimum
        if xp is numpy or not is_low_precision(out.dtype):
            ufunc.at(out, self.where_, src)
            return out
        wide = out.astype(numpy.float32)
        ufunc.at(wide, self.where_, src.astype(numpy.float32))
        return wide.astype(out.dtype)

    def _prod_by_logs(self, out, src):
        """CuPy has no multiply.at: the product as sign * exp(sum log|v|), zeros counted apart."""
        xp, w = self.xp, self.where_
        if _kind(out.dtype) != "f":
            raise NotImplementedError(
                "scatter_reduce(reduce='prod') on cuda supports floating-point tensors only"
            )
        logs = xp.log(xp.where(out == 0, 1, xp.abs(out)))
        zeros, negs = (out == 0).astype(out.dtype), (out < 0).astype(out.dtype)
        add_at(xp, logs, w, xp.log(xp.where(src == 0, 1, xp.abs(src))))
        add_at(xp, zeros, w, (src == 0).astype(out.dtype))
        add_at(xp, negs, w, (src < 0).astype(out.dtype))
        sign = 1 - 2 * (negs % 2)
        return xp.where(zeros > 0, 0, sign * xp.exp(logs)).astype(out.dtype)

    def backward(self, gy):
        x, src = self.inputs
        w, r, xp = self.where_, self.reduce, self.xp
        scattered = xp.zeros(x.shape, bool)
        scattered[w] = True
        keep = None if self.include_self else gy._new(~scattered, gy.device)
        if r == "sum":
            gx = gy if keep is None else gy * keep
            return gx, getitem(gy, w)
        if r == "mean":
            c = self._counts(x.array)
            g = gy / gy._new(xp.maximum(c, 1), gy.device)
            gx = g if keep is None else gy * keep
            return gx, getitem(g, w)
        y = self.output().array
        if r in ("amax", "amin"):
            # Ties share the gradient evenly between all the values equal to the result.
            hit_x = (x.array == y) & (True if keep is None else ~scattered)
            hit_src = src.array == y[w]
            c = hit_x.astype(gy.dtype)
            add_at(xp, c, w, hit_src.astype(gy.dtype))
            g = gy / gy._new(xp.maximum(c, 1), gy.device)
            gx = g * gy._new(hit_x, gy.device)
            return gx, getitem(g, w) * gy._new(hit_src, gy.device)
        if bool((x.array != 0).all()) and bool((src.array != 0).all()):
            # No zeros: d out / d v = out / v, in engine ops (differentiable again).
            out = self.output()
            gx = gy * out / x if keep is None else gy * keep
            return gx, getitem(gy * out, w) / src
        return self._prod_backward(gy, x.array, src.array, y, scattered)

    def _prod_backward(self, gy, x, src, y, scattered):
        """With zeros: d out / d v = the product of the other values reduced into v's position,
        without dividing by v where v is 0 (then it is the product of the non-zero others if v
        was the only zero, else 0)."""
        if is_grad_enabled():
            raise RuntimeError(
                "scatter_reduce(reduce='prod'): double backward (create_graph=True) at inputs "
                "containing zeros is not supported"
            )
        xp, w = self.xp, self.where_
        x_in = x if self.include_self else xp.ones_like(x)
        nz = ScatterReduce(w, "prod", True)
        nz.xp = xp
        nonzero_prod = nz.forward(xp.where(x_in == 0, 1, x_in), xp.where(src == 0, 1, src))
        zeros = (x_in == 0).astype(y.dtype)  # float counts: CuPy's add.at takes no int64
        add_at(xp, zeros, w, (src == 0).astype(y.dtype))

        def others(v, prod, nzp, zc):
            safe = xp.where(v == 0, 1, v)
            return xp.where(v == 0, xp.where(zc == 1, nzp, 0), prod / safe)

        gx = others(x_in, y, nonzero_prod, zeros)
        if not self.include_self:
            gx = xp.where(scattered, 0, 1).astype(y.dtype)
        gsrc = others(src, y[w], nonzero_prod[w], zeros[w])
        return gy * gy._new(gx.astype(y.dtype), gy.device), getitem(gy, w) * gy._new(
            gsrc.astype(y.dtype), gy.device
        )


def scatter_reduce(
    input: TensorBase,
    dim: int,
    index: TensorBase,
    src: TensorBase,
    reduce: str,
    *,
    include_self: bool = True,
) -> TensorBase:
    """Reduce `src` into `input` at `index` along `dim` with `reduce` in sum, prod, mean, amax,
    amin (`input`'s own values join unless `include_self=False`)."""
    if reduce not in _REDUCES:
        raise RuntimeError(f"scatter_reduce(): reduce must be one of {_REDUCES}, got {reduce!r}")
    where_, s = _scatter_args(input, dim, index, src, "scatter_reduce")
    return ScatterReduce(where_, reduce, include_self)(input, s)


# Triangles and diagonals ----------------------------------------------------------------------
class _Triangle(Function):
    saves_inputs = False
    lower = True

    def __init__(self, k):
        self.k = k

    def forward(self, x):
        n, m = x.shape[-2:]
        keep = self.xp.tri(n, m, self.k, dtype=bool)
        if not self.lower:
            keep = ~self.xp.tri(n, m, self.k - 1, dtype=bool)
        return self.xp.where(keep, x, 0).astype(x.dtype, copy=False)

    def backward(self, gy):
        return type(self)(self.k)(gy)


class Tril(_Triangle):
    lower = True


class Triu(_Triangle):
    lower = False


def _check_matrix(x: TensorBase, what: str) -> None:
    if x.ndim < 2:
        raise RuntimeError(f"{what}: input tensor must have at least 2 dimensions, got {x.shape}")


def tril(input: TensorBase, diagonal: int = 0) -> TensorBase:
    """The lower triangle of the last two dimensions (on and below `diagonal`), zeros above."""
    _check_matrix(input, "tril")
    return Tril(int(diagonal))(input)


def triu(input: TensorBase, diagonal: int = 0) -> TensorBase:
    """The upper triangle of the last two dimensions (on and above `diagonal`), zeros below."""
    _check_matrix(input, "triu")
    return Triu(int(diagonal))(input)


def _diag_positions(n: int, m: int, offset: int, xp):
    length = max(0, min(n + min(offset, 0), m - max(offset, 0)))
    i = xp.arange(length)
    return i + max(-offset, 0), i + max(offset, 0)


@on_device
def diagonal(input: TensorBase, offset: int = 0, dim1: int = 0, dim2: int = 1) -> TensorBase:
    """The diagonal of the (dim1, dim2) planes, as a last dimension (PyTorch's layout)."""
    _check_matrix(input, "diagonal")
    a, b = _norm_dim(dim1, input.ndim), _norm_dim(dim2, input.ndim)
    if a == b:
        raise RuntimeError(f"diagonal(): dim1 and dim2 cannot be equal, got {dim1} and {dim2}")
    rest = [d for d in range(input.ndim) if d not in (a, b)]
    x = permute(input, *rest, a, b)
    rows, cols = _diag_positions(x.shape[-2], x.shape[-1], offset, input.xp)
    return getitem(x, (Ellipsis, rows, cols))


@on_device
def diag(input: TensorBase, diagonal: int = 0) -> TensorBase:
    """1-D input: the square matrix with it on the `diagonal`-th diagonal; 2-D: that diagonal."""
    if input.ndim == 2:
        return globals()["diagonal"](input, diagonal)
    if input.ndim != 1:
        raise RuntimeError(f"diag(): expected a 1-D or 2-D tensor, got shape {input.shape}")
    n = input.shape[0] + abs(diagonal)
    rows, cols = _diag_positions(n, n, diagonal, input.xp)
    return GetItemGrad((rows, cols), (n, n))(input)  # zeros with input scattered onto the diagonal


# Rearranging ----------------------------------------------------------------------------------
@on_device
def roll(input: TensorBase, shifts, dims=None) -> TensorBase:
    """Shift elements along `dims` with wrap-around (the flattened tensor when `dims` is None)."""
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"roll(): {len(shifts)} shifts need as many dims, got none")
        return reshape(roll(flatten(input), shifts, 0), input.shape)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll(): shifts {shifts} and dims {dims} must have the same length")
    index = [slice(None)] * input.ndim
    for s, d in zip(shifts, dims):
        d = _norm_dim(d, input.ndim)
        n = input.shape[d]
        if n:
            pos = (input.xp.arange(n) - s) % n
            index[d] = pos
            input = getitem(input, tuple(index))
            index[d] = slice(None)
    return input


@on_device
def repeat_interleave(input: TensorBase, repeats=None, dim: int | None = None) -> TensorBase:
    """Repeat each element `repeats` times (an int, or one count per element) along `dim`
    (the flattened input when `dim` is None). A tensor of counts is read on the host."""
    if repeats is None:  # torch.repeat_interleave(counts): arange(len(counts)) repeated
        counts = input
        return repeat_interleave(
            input._new(input.xp.arange(counts.shape[0]), input.device), counts, 0
        )
    if dim is None:
        input, dim = flatten(input), 0
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(repeats, TensorBase):
        reps = [int(r) for r in repeats.tolist()] if repeats.ndim else int(repeats.item())
    else:
        reps = repeats
    if not isinstance(reps, int) and len(reps) != n:
        raise RuntimeError(
            f"repeat_interleave(): repeats must have the same size as input along dim, got "
            f"{len(reps)} and {n}"
        )
    if (reps < 0) if isinstance(reps, int) else any(r < 0 for r in reps):
        raise RuntimeError("repeat_interleave(): repeats can not be negative")
    pos = numpy.repeat(numpy.arange(n), reps)
    return getitem(input, (slice(None),) * d + (input.xp.asarray(pos),))


@on_device
def unfold(input: TensorBase, dimension: int, size: int, step: int) -> TensorBase:
    """Tensor.unfold: every slice of length `size` along `dimension`, `step` apart, as a new
    last dimension (an (n - size) // step + 1 windows long `dimension`)."""
    d = _norm_dim(dimension, input.ndim)
    n = input.shape[d] if input.ndim else 1
    if size > n or size < 0:
        raise RuntimeError(f"unfold(): size {size} exceeds the size {n} of dimension {dimension}")
    if step <= 0:
        raise RuntimeError(f"unfold(): step must be > 0, got {step}")
    if input.ndim == 0:
        return reshape(input, (1,))
    xp = input.xp
    windows = (n - size) // step + 1
    idx = xp.arange(windows)[:, None] * step + xp.arange(size)[None, :]
    y = getitem(input, (slice(None),) * d + (idx,))  # (..., windows, size, rest...)
    order = list(range(y.ndim))
    order.append(order.pop(d + 1))
    return permute(y, *order)


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids from 1-D tensors; `indexing="xy"` swaps the first two dimensions."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid(): indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid(): expected 0-D or 1-D tensors, got shape {t.shape}")
    flat = [reshape(t, (-1,)) if t.ndim == 0 else t for t in tensors]
    sizes = [t.shape[0] for t in flat]
    swap = indexing == "xy" and len(flat) > 1
    if swap:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, t in enumerate(flat):
        axis = {0: 1, 1: 0}.get(i, i) if swap else i
        shape = [1] * len(flat)
        shape[axis] = t.shape[0]
        out.append(broadcast_to(reshape(t, tuple(shape)), tuple(sizes)))
    return tuple(out)


__all__ = [
    "gather",
    "take_along_dim",
    "index_select",
    "masked_select",
    "masked_fill",
    "nonzero",
    "argsort",
    "sort",
    "topk",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "tril",
    "triu",
    "diagonal",
    "diag",
    "roll",
    "repeat_interleave",
    "meshgrid",
]
