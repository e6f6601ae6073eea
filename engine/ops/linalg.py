"""Matrix products: matmul (cuBLAS / BLAS through xp.matmul) and the fused linear layer."""

from __future__ import annotations

from ..autograd import Function, is_grad_enabled
from ..tensorbase import TensorBase
from .shape import reshape, squeeze, sum_to, transpose, unsqueeze


class MatMul(Function):
    def forward(self, a, b):
        return self.xp.matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        if a.ndim == b.ndim == 2 and not is_grad_enabled():
            return _matmul_grads_2d(self.xp, gy, a, b)
        ga = sum_to(matmul(gy, transpose(b, -1, -2)), a.shape) if a.requires_grad else None
        gb = sum_to(matmul(transpose(a, -1, -2), gy), b.shape) if b.requires_grad else None
        return ga, gb


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
        y = self.xp.matmul(x, w.T)
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        if not is_grad_enabled():
            return self._backward_arrays(gy)
        gx = linear(gy, transpose(w, 0, 1)) if x.requires_grad else None
        gw = gb = None
        if w.requires_grad:
            g2 = reshape(gy, (-1, gy.shape[-1])) if gy.ndim != 2 else gy
            x2 = reshape(x, (-1, x.shape[-1])) if x.ndim != 2 else x
            gw = matmul(transpose(g2, 0, 1), x2)
        if len(self.inputs) == 3 and self.inputs[2].requires_grad:
            gb = sum_to(gy, self.inputs[2].shape)
        return gx, gw, gb

    def _backward_arrays(self, gy):
        """The same gradients straight from the arrays when backward is not recorded: three
        GEMM/sum calls instead of ~6 engine ops (transposes, reshapes, sum_to)."""
        xp, g = self.xp, gy.array
        x, w = self.inputs[0], self.inputs[1]
        g2 = g.reshape(-1, g.shape[-1])
        grads = [
            _wrap(xp.matmul(g, w.array), gy) if x.requires_grad else None,
            _wrap(xp.matmul(g2.T, x.array.reshape(-1, x.shape[-1])), gy)
            if w.requires_grad
            else None,
        ]
        if len(self.inputs) == 3:
            grads.append(_wrap(g2.sum(axis=0), gy) if self.inputs[2].requires_grad else None)
        return tuple(grads)


def _wrap(array, like: TensorBase) -> TensorBase:
    return like._new(array, like.device)


def _matmul_grads_2d(xp, gy, a, b):
    g = gy.array
    ga = _wrap(xp.matmul(g, b.array.T), gy) if a.requires_grad else None
    gb = _wrap(xp.matmul(a.array.T, g), gy) if b.requires_grad else None
    return ga, gb


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


__all__ = ["matmul", "linear"]
