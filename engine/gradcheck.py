"""`engine.gradcheck`: compare analytic gradients with float64 central differences."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy

from .autograd import grad as _grad
from .tensor import Tensor

__all__ = ["gradcheck", "numerical_grad"]


def _cotangent(out: Tensor) -> numpy.ndarray:
    """The fixed random cotangent v both sides of a gradcheck contract `out` with."""
    return numpy.random.default_rng(0).standard_normal(out.shape)


def numerical_grad(
    fn: Callable, inputs: Sequence[Tensor], eps: float = 1e-6, v: numpy.ndarray | None = None
) -> list:
    """d sum(fn(*inputs) * v) / d input by central differences, v a fixed random cotangent
    (drawn from fn's output when not given)."""
    if v is None:
        v = _cotangent(fn(*inputs))
    grads = []
    for x in inputs:
        if not (isinstance(x, Tensor) and x.requires_grad):
            grads.append(None)
            continue
        host = x.numpy().copy()
        g = numpy.zeros(x.shape, dtype=numpy.float64)
        flat = host.reshape(-1)
        for i in range(flat.size):  # test-time reference only: a loop over elements is the point
            orig = flat[i]
            flat[i] = orig + eps
            x.array[...] = x.xp.asarray(host)
            plus = numpy.sum(fn(*inputs).numpy() * v)
            flat[i] = orig - eps
            x.array[...] = x.xp.asarray(host)
            minus = numpy.sum(fn(*inputs).numpy() * v)
            flat[i] = orig
            x.array[...] = x.xp.asarray(host)
            g.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def gradcheck(
    fn: Callable,
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """True when the analytic vector-Jacobian product matches central differences.

    Inputs should be float64 tensors; those with `requires_grad=True` are checked.
    """
    inputs = list(inputs)
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != numpy.float64:
            raise TypeError(f"gradcheck needs float64 inputs, got {x.dtype}")
    out = fn(*inputs)
    v = _cotangent(out)
    wrt = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    analytic = _grad(
        out, wrt, grad_outputs=Tensor._wrap(out.xp.asarray(v), out.device), allow_unused=True
    )
    numeric = [g for g in numerical_grad(fn, inputs, eps, v) if g is not None]
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        a = numpy.zeros_like(n) if a is None else a.numpy()
        if not numpy.allclose(a, n, atol=atol, rtol=rtol):
            if raise_exception:
                err = numpy.max(numpy.abs(a - n))
                raise AssertionError(
                    f"gradcheck failed for input {i} (shape {n.shape}): max abs error {err:.3g}\n"
                    f"analytic:\n{a}\nnumerical:\n{n}"
                )
            return False
    return True
