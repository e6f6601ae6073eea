"""Matrix products: matmul (cuBLAS / BLAS through xp.matmul), the fused linear layer, bmm,
baddbmm, outer, cross, einsum; vector and matrix norms (torch.linalg's)."""

from __future__ import annotations

import string

import numpy

from ..autocast_mode import autocast_op as _autocast_op
from ..autocast_mode import cast_inputs as _cast_inputs
from ..autograd import Function, is_grad_enabled
from ..device import on_device
from ..dtypes import is_low_precision
from ..dtypes import kind as _kind
from ..tensorbase import TensorBase
from .indexing import index_select
from .math import abs as _abs
from .math import where
from .reduction import _keep_shape, amax, amin
from .reduction import sum as _sum
from .shape import _norm_dim, broadcast_to, permute, reduce_to, reshape, squeeze, sum_to, unsqueeze


def gemm(xp, a, b):
    """`a @ b` on raw arrays. float16/bfloat16 on the CPU as tensor cores compute it: NumPy has
    no half-precision BLAS (its float16 matmul is a slow C loop, bfloat16 none at all), so the
    rounded inputs are multiplied by float32 BLAS (products of two half values are exact in
    float32), accumulated in float32 and the output rounded once to the inputs' dtype. On cuda,
    cuBLAS does the same in hardware (float32 accumulation for half inputs)."""
    if xp is numpy and is_low_precision(a.dtype) and a.dtype == b.dtype:
        f32 = numpy.float32
        return numpy.matmul(a.astype(f32), b.astype(f32)).astype(a.dtype)
    if (xp is numpy and a.shape[-1] == 1 and a.ndim >= 2 and b.ndim >= 2
            and a.dtype == b.dtype and a.dtype.kind == "f"):  # fmt: skip
        # An inner dimension of 1 is an outer product: each output one product added to 0,
        # as BLAS sums it (-0 comes out +0), so the broadcast multiply and + 0 give BLAS's
        # values. OpenBLAS runs such a GEMM slowly: the DCGAN discriminator's Linear(6272, 1)
        # input gradient, (64 x 1) @ (1 x 6272), took 445 us, these two 60 (NOTES.md item 22).
        out = numpy.multiply(a, b)
        out += 0
        return out
    return xp.matmul(a, b)


def _mm(a, b, xp):
    """`a @ b` in a backward formula: engine ops when recorded (Tensors), `gemm` on arrays."""
    return a @ b if isinstance(a, TensorBase) else gemm(xp, a, b)


class MatMul(Function):
    def forward(self, a, b):
        return gemm(self.xp, a, b)

    def backward(self, gy):
        (a, b), g = self.operands(gy)  # Tensors when recorded, raw arrays otherwise
        xp, (ta, tb) = self.xp, self.inputs
        ga = reduce_to(_mm(g, b.mT, xp), a.shape, xp) if ta.requires_grad else None
        gb = reduce_to(_mm(a.mT, g, xp), b.shape, xp) if tb.requires_grad else None
        return self.results(gy, ga, gb)


@_autocast_op("matmul")
def matmul(a: TensorBase, b: TensorBase) -> TensorBase:
    """`a @ b` with NumPy's rules: 1-D operands are promoted and the added dim removed."""
    if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
        raise TypeError("matmul expects two tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise RuntimeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied")
    if a.ndim == 1 and b.ndim == 1:
        return reshape(MatMul()(unsqueeze(a, 0), unsqueeze(b, 1)), ())
    if a.ndim == 1:
        return squeeze(MatMul()(unsqueeze(a, 0), b), -2)
    if b.ndim == 1:
        return squeeze(MatMul()(a, unsqueeze(b, 1)), -1)
    return MatMul()(a, b)


class Linear(Function):
    """y = x W^T + b over the last dim of x: one GEMM forward, two backward."""

    def forward(self, x, w, b=None):
        y = gemm(self.xp, x, w.T)
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        # One formula for both modes (Function.operands): three GEMM/sum calls on raw arrays,
        # or the same in engine ops when the backward is recorded.
        (x, w, *_), g = self.operands(gy)
        wanted = [t.requires_grad for t in self.inputs]
        g2 = g.reshape(-1, g.shape[-1])
        gx = _mm(g, w, self.xp) if wanted[0] else None
        gw = _mm(g2.T, x.reshape(-1, x.shape[-1]), self.xp) if wanted[1] else None
        gb = g2.sum(0) if len(wanted) == 3 and wanted[2] else None
        return self.results(gy, gx, gw, gb)[: len(wanted)]


@_autocast_op("linear")
def linear(x: TensorBase, weight: TensorBase, bias: TensorBase | None = None) -> TensorBase:
    """PyTorch's `F.linear`: x (..., in) @ weight (out, in)^T + bias (out)."""
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(expected input (..., {weight.shape[-1] if weight.ndim else '?'}))"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeError(f"linear: bias of shape {bias.shape} for weight of shape {weight.shape}")
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


# Batched products ----------------------------------------------------------------------------
def bmm(input: TensorBase, mat2: TensorBase) -> TensorBase:
    """(b, n, m) @ (b, m, p) -> (b, n, p), without broadcasting (as torch.bmm)."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got shapes {input.shape} and {mat2.shape}")
    if input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise RuntimeError(f"bmm: shapes {input.shape} and {mat2.shape} cannot be multiplied")
    return matmul(input, mat2)


@_autocast_op("baddbmm")
def baddbmm(
    input: TensorBase, batch1: TensorBase, batch2: TensorBase, *, beta=1, alpha=1
) -> TensorBase:
    """beta * input + alpha * bmm(batch1, batch2) (`input` broadcasts)."""
    prod = bmm(batch1, batch2)
    if alpha != 1:
        prod = prod * alpha
    if beta == 0:  # PyTorch ignores input then, NaN and inf included
        return prod
    return (input * beta if beta != 1 else input) + prod


def outer(input: TensorBase, vec2: TensorBase) -> TensorBase:
    """The outer product of two 1-D tensors: out[i, j] = input[i] * vec2[j]."""
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got {input.shape} and {vec2.shape}")
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


@on_device
def cross(input: TensorBase, other: TensorBase, dim: int | None = None) -> TensorBase:
    """The cross product of 3-vectors along `dim` (the first dimension of size 3 when None, as
    torch.cross; torch.linalg.cross uses -1); the operands broadcast."""
    shape = numpy.broadcast_shapes(input.shape, other.shape)
    a, b = broadcast_to(input, shape), broadcast_to(other, shape)
    if dim is None:
        dim = next((i for i, n in enumerate(shape) if n == 3), None)
        if dim is None:
            raise RuntimeError(f"cross: no dimension of size 3 in shape {shape}")
    d = _norm_dim(dim, len(shape))
    if shape[d] != 3:
        raise RuntimeError(f"cross: dimension {dim} of shape {shape} must have size 3")

    def pick(t, order):
        return index_select(t, d, t._new(t.xp.asarray(order, numpy.int64), t.device))

    n, p = [1, 2, 0], [2, 0, 1]  # (a x b)_k = a_{k+1} b_{k+2} - a_{k+2} b_{k+1}
    return pick(a, n) * pick(b, p) - pick(a, p) * pick(b, n)


# einsum --------------------------------------------------------------------------------------
def _parse_einsum(equation: str, shapes) -> tuple[list[str], str]:
    """Explicit subscripts for each operand and the output: `...` expanded into letters the
    equation does not use, an implicit output (no `->`) made explicit as NumPy does."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum(): {equation!r} names {len(terms)} operands, got {len(shapes)}")
    free = [c for c in string.ascii_letters if c not in eq]
    n_ell = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t),
                default=0)  # fmt: skip
    ell = "".join(free[:n_ell])
    subs = []
    for t, s in zip(terms, shapes):
        k = len(s) - len(t.replace("...", ""))
        t = t.replace("...", ell[n_ell - k :] if k else "")
        if len(t) != len(s) or not all(c in string.ascii_letters for c in t):
            raise ValueError(f"einsum(): subscripts {t!r} do not fit an operand of shape {s}")
        subs.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {c: "".join(subs).count(c) for c in "".join(subs)}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return subs, out


class Einsum(Function):
    def __init__(self, subs, out):
        self.subs, self.out = subs, out

    def forward(self, *xs):
        eq = ",".join(self.subs) + "->" + self.out
        if is_low_precision(xs[0].dtype):  # tensor-core emulation, as matmul (NumPy's einsum
            # refuses bfloat16 and sums float16 in float16): float32 products and sums, one rounding
            return self.xp.einsum(eq, *(x.astype(numpy.float32) for x in xs)).astype(xs[0].dtype)
        return self.xp.einsum(eq, *xs)

    def backward(self, gy):
        return tuple(
            self._grad(i, gy) if x.requires_grad else None for i, x in enumerate(self.inputs)
        )

    def _grad(self, i, gy):
        """d out / d operand i as another einsum of gy and the other operands: over its
        letters that appear elsewhere, broadcast over those summed away inside it alone, and
        spread onto the diagonal for a letter it repeats (`ii`)."""
        x, sub = self.inputs[i], self.subs[i]
        others = [(s, t) for j, (s, t) in enumerate(zip(self.subs, self.inputs)) if j != i]
        elsewhere = set(self.out).union(*[set(s) for s, _ in others])
        uniq = list(dict.fromkeys(sub))
        size = {c: x.shape[sub.index(c)] for c in uniq}
        keep = "".join(c for c in uniq if c in elsewhere)
        eq = ",".join([self.out] + [s for s, _ in others]) + "->" + keep
        g = einsum(eq, gy, *[t for _, t in others])
        if len(keep) < len(uniq):  # letters only in this operand: constant along them
            g = reshape(g, tuple(g.shape[keep.index(c)] if c in keep else 1 for c in uniq))
            g = broadcast_to(
                g, tuple(g.shape[k] if c in keep else size[c] for k, c in enumerate(uniq))
            )  # noqa: E501
        if len(uniq) < len(sub):  # a repeated letter: only its diagonal got the gradient
            spare = iter(c for c in string.ascii_letters if c not in "".join(self.subs) + self.out)
            full, eyes, seen = "", [], set()
            for c in sub:
                if c in seen:
                    f = next(spare)
                    full += f
                    eyes.append((c + f, x._new(x.xp.eye(size[c], dtype=x.dtype), x.device)))
                else:
                    full += c
                    seen.add(c)
            g = einsum(",".join(["".join(uniq)] + [e for e, _ in eyes]) + "->" + full, g,
                       *[t for _, t in eyes])  # fmt: skip
        return sum_to(g, x.shape)


def einsum(equation: str, *operands) -> TensorBase:
    """Einstein summation over `operands` (a list works too), as torch.einsum: `...` and the
    implicit output included; differentiable (its gradients are einsums again)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    subs, out = _parse_einsum(equation, [t.shape for t in operands])
    if len(operands) > 1:  # PyTorch's einsum multiplies pairs with bmm (autocast's low list)
        operands = _cast_inputs("einsum", *operands)
    dt = numpy.result_type(*[t.dtype for t in operands])
    operands = [t if t.dtype == dt else t.to(dt) for t in operands]
    # Size-1 sides broadcast (NumPy does it inside einsum, CuPy's einsum may refuse): expand
    # them here, so the Function sees equal sizes and the gradient sums back through the view.
    size = {}
    for sub, t in zip(subs, operands):
        for c, n in zip(sub, t.shape):
            if size.get(c, 1) not in (1, n) and n != 1:
                raise RuntimeError(
                    f"einsum(): subscript {c!r} has sizes {size[c]} and {n} in {equation!r}"
                )
            size[c] = n if n != 1 else size.get(c, 1)
    operands = [
        t if all(n == size[c] for c, n in zip(sub, t.shape))
        else broadcast_to(t, tuple(size[c] for c in sub))
        for sub, t in zip(subs, operands)
    ]  # fmt: skip
    return Einsum(subs, out)(*operands)


# Norms (torch.linalg's vector_norm and matrix_norm) -------------------------------------------
def _dims(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted({_norm_dim(d, ndim) for d in dims}))


class Norm2(Function):
    """Euclidean norm over axes; its gradient x / ||x|| is 0 where the norm is 0 (as PyTorch)."""

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        return self.xp.sqrt((x * x).sum(axis=self.axes, keepdims=self.keepdim))

    def backward(self, gy):
        x, n = self.inputs[0], self.output()
        if not self.keepdim:
            keep = _keep_shape(x.shape, self.axes)
            n, gy = reshape(n, keep), reshape(gy, keep)
        safe = where(n > 0, n, 1.0)  # x is 0 wherever n is, so the gradient is 0 there
        return broadcast_to(gy / safe, x.shape) * x


@_autocast_op("linalg_vector_norm")
@on_device
def vector_norm(x: TensorBase, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> TensorBase:
    """The `ord`-norm of `x` over `dim` (all elements by default) seen as one vector:
    sum(|x|^ord)^(1/ord), max |x| for inf, min |x| for -inf, the count of non-zeros for 0."""
    if dtype is not None:
        x = x.to(dtype)
    if _kind(x.dtype) not in "fc":
        raise RuntimeError(f"vector_norm: expected a floating-point tensor, got {x.dtype}")
    if x.ndim == 0:  # a vector of one (0-d with keepdim too, as PyTorch)
        return reshape(vector_norm(reshape(x, (1,)), ord, 0), ())
    axes = _dims(dim, x.ndim)
    if ord == 2:
        return Norm2(axes, keepdim)(x)
    if ord == float("inf"):
        return amax(_abs(x), axes, keepdim)
    if ord == float("-inf"):
        return amin(_abs(x), axes, keepdim)
    if ord == 0:  # the count of non-zeros, in the graph with a zero gradient (PyTorch)
        nonzero = x._new((x.array != 0).astype(x.dtype), x.device)
        return _sum(where(x.xp.ones(x.shape, bool), nonzero, x), axes, keepdim)
    if ord == 1:
        return _sum(_abs(x), axes, keepdim)
    return _sum(_abs(x) ** ord, axes, keepdim) ** (1.0 / ord)


@_autocast_op("linalg_matrix_norm")
def matrix_norm(A: TensorBase, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None):
    """Matrix norms over the two dims `dim`: 'fro', 'nuc' (sum of singular values), 2 / -2
    (largest / smallest singular value), 1 / -1 (max / min column sum of |A|), inf / -inf
    (max / min row sum)."""
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2 or len(dim) != 2:
        raise RuntimeError(f"matrix_norm: expected two dims of a >= 2-D tensor, got {A.shape}")
    r, c = (_norm_dim(d, A.ndim) for d in dim)
    if ord == "fro":
        return vector_norm(A, 2, (r, c), keepdim)
    if ord in ("nuc", 2, -2):
        rest = [d for d in range(A.ndim) if d not in (r, c)]
        s = svdvals(permute(A, *rest, r, c))
        out = _sum(s, -1) if ord == "nuc" else (amax if ord == 2 else amin)(s, -1)
        if keepdim:
            out = unsqueeze(unsqueeze(out, min(r, c)), max(r, c))
        return out
    if ord not in (1, -1, float("inf"), float("-inf")):
        raise RuntimeError(
            f"matrix_norm: ord must be 'fro', 'nuc', 2, -2, 1, -1, inf or -inf, got {ord!r}"
        )
    across, then = (r, c) if ord in (1, -1) else (c, r)  # sum over rows for column sums
    sums = _sum(_abs(A), across, keepdim=True)
    out = (amax if ord > 0 else amin)(sums, then, keepdim=True)
    return out if keepdim else squeeze(out, (r, c))


@_autocast_op("norm")
def norm(x: TensorBase, p="fro", dim=None, keepdim: bool = False, dtype=None) -> TensorBase:
    """torch.norm: the p-norm over `dim` (all elements by default) as one vector; p may be a
    number, inf, -inf, 0 or 'fro'; 'nuc' (and 'fro' over two dims) are matrix norms."""
    if p == "nuc":
        if dim is None and x.ndim != 2:
            raise RuntimeError(f"norm: 'nuc' needs a 2-D input or two dims, got shape {x.shape}")
        return matrix_norm(x, "nuc", (-2, -1) if dim is None else dim, keepdim, dtype=dtype)
    if isinstance(p, str) and p != "fro":
        raise RuntimeError(f"norm: p must be a number, inf, 'fro' or 'nuc', got {p!r}")
    return vector_norm(x, 2 if p == "fro" else p, dim, keepdim, dtype=dtype)


class SingularValues(Function):
    """The singular values of the (batched) matrices, largest first; d s_i / d A = u_i v_i^T
    (distinct singular values assumed, as in PyTorch)."""

    def forward(self, a):
        u, s, vh = self.xp.linalg.svd(a, full_matrices=False)
        self.u, self.vh = u, vh
        return s

    def backward(self, gs):
        if is_grad_enabled():
            raise RuntimeError("svdvals: double backward (create_graph=True) is not supported")
        xp = self.xp
        g = xp.matmul(self.u * gs.array[..., None, :], self.vh)
        return gs._new(g.astype(self.inputs[0].dtype, copy=False), gs.device)


def svdvals(A: TensorBase) -> TensorBase:
    """Singular values of the matrices in the last two dims of `A` (torch.linalg.svdvals)."""
    if A.ndim < 2 or _kind(A.dtype) != "f":
        raise RuntimeError(
            f"svdvals: expected floating (..., m, n) matrices, got {A.dtype} {A.shape}"
        )  # noqa: E501
    return SingularValues()(A)


def linalg_norm(A: TensorBase, ord=None, dim=None, keepdim: bool = False, *, dtype=None):
    """torch.linalg.norm: a vector norm over one dim (or all of a 1-D/flattened input), a
    matrix norm over two dims (or a 2-D input when `ord` is given)."""
    if isinstance(dim, int) or (dim is not None and len(dim) == 1):
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is not None and len(dim) == 2 or (dim is None and ord is not None and A.ndim == 2):
        return matrix_norm(A, "fro" if ord is None else ord, dim or (-2, -1), keepdim, dtype=dtype)
    if ord is not None and A.ndim != 1:
        raise RuntimeError(
            f"linalg.norm: ord={ord!r} needs a 1-D or 2-D input or dim, got {A.shape}"
        )  # noqa: E501
    return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


__all__ = ["matmul", "linear", "bmm", "baddbmm", "outer", "cross", "einsum", "norm"]
