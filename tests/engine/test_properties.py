"""Property tests (hypothesis) for broadcasting and its gradient, shared by every binary op."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, requires_torch, torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import broadcastable_shapes, mutually_broadcastable_shapes

import engine

SETTINGS = settings(max_examples=40, deadline=None)


def _values(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def shape_and_broadcast(draw):
    """A shape and a larger shape it broadcasts to (size-1 and size-0 sides included)."""
    shape = draw(st.lists(st.integers(0, 3), max_size=3).map(tuple))
    target = draw(broadcastable_shapes(shape, min_side=0, max_side=3, max_dims=4))
    # broadcastable_shapes gives shapes that broadcast *with* `shape`; keep those `shape` expands to
    full = np.broadcast_shapes(shape, target)
    return shape, full


@SETTINGS
@given(shapes=shape_and_broadcast(), seed=st.integers(0, 2**16))
def test_sum_to_undoes_broadcast_to(device, shapes, seed):
    shape, target = shapes
    x = engine.tensor(_values(shape, seed), device=device)
    b = engine.broadcast_to(x, target)
    assert b.shape == target
    copies = int(np.prod(target)) // max(int(np.prod(shape)), 1)
    back = engine.sum_to(b, shape)
    assert back.shape == shape
    if int(np.prod(target)):
        np.testing.assert_allclose(back.numpy(), x.numpy() * copies, rtol=1e-5)


@SETTINGS
@given(shapes=shape_and_broadcast(), seed=st.integers(0, 2**16))
def test_broadcast_gradient_is_the_sum_over_broadcast_axes(device, shapes, seed):
    shape, target = shapes
    x = engine.tensor(_values(shape, seed), device=device, requires_grad=True)
    v = _values(target, seed + 1)
    x.expand(*target).backward(engine.tensor(v, device=device))
    lead = len(target) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and target[lead + i] != 1
    )
    expected = v.sum(axis=axes, keepdims=True).reshape(shape) if axes else v.reshape(shape)
    assert x.grad.shape == shape
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-5)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1.0),
    "maximum": lambda a, b: (engine if isinstance(a, engine.Tensor) else torch).maximum(a, b),
}


@requires_torch
@pytest.mark.parametrize("op", list(BINARY))
@SETTINGS
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_side=0, max_side=3, max_dims=4),
    seed=st.integers(0, 2**16),
)
def test_binary_gradients_under_broadcasting_match_torch(device, op, shapes, seed):
    fn = BINARY[op]
    a0, b0 = _values(shapes.input_shapes[0], seed), _values(shapes.input_shapes[1], seed + 1)
    v = _values(shapes.result_shape, seed + 2)
    a, b = (engine.tensor(z, device=device, requires_grad=True) for z in (a0, b0))
    ta, tb = (torch.tensor(z, requires_grad=True) for z in (a0, b0))
    out, tout = fn(a, b), fn(ta, tb)
    assert out.shape == tuple(tout.shape)
    out.backward(engine.tensor(v, device=device))
    tout.backward(torch.from_numpy(v))
    assert_close(out, tout, atol=1e-6, rtol=1e-5)
    assert_close(a.grad, ta.grad, atol=1e-5, rtol=1e-5)
    assert_close(b.grad, tb.grad, atol=1e-5, rtol=1e-5)


@SETTINGS
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=3, min_side=1, max_side=3, max_dims=3),
    seed=st.integers(0, 2**16),
)
def test_where_gradients_split_between_branches(device, shapes, seed):
    """d/da + d/db of where(c, a, b) with all-ones cotangent counts each output element once."""
    c0 = _values(shapes.input_shapes[0], seed) > 0
    a = engine.tensor(_values(shapes.input_shapes[1], seed), device=device, requires_grad=True)
    b = engine.tensor(_values(shapes.input_shapes[2], seed), device=device, requires_grad=True)
    engine.where(engine.tensor(c0, device=device), a, b).sum().backward()
    total = a.grad.numpy().sum() + b.grad.numpy().sum()
    assert total == pytest.approx(float(np.prod(shapes.result_shape)))
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    data=st.data(),
)
def test_reductions_keepdim_roundtrip(device, shape, data):
    """sum/mean/amax over any dims: keepdim=True broadcasts back; gradient shape is the input's."""
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple))
    x = engine.tensor(_values(shape, 0), device=device, requires_grad=True)
    for name in ("sum", "mean", "amax"):
        kept = getattr(x, name)(dims, keepdim=True)
        dropped = getattr(x, name)(dims)
        assert kept.shape == tuple(1 if i in dims else s for i, s in enumerate(shape))
        np.testing.assert_allclose(kept.numpy().reshape(dropped.shape), dropped.numpy(), rtol=1e-6)
        expected = getattr(np, {"amax": "max"}.get(name, name))(x.numpy(), axis=dims)
        np.testing.assert_allclose(dropped.numpy(), expected, rtol=1e-5)
        (x - kept).sum().backward()
        assert x.grad.shape == shape
        x.grad = None
