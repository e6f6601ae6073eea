"""The cuda conv backward shares work between its gradients (issue 12): gy transposed once for
the input, weight and bias gradients; a conv_transpose2d keeps its transposed input for its
weight gradient and its backward conv's columns; the weight gradient is its own array (autograd
stores it without a copy). Each must give the unshared path's values, at first and second order.
"""

# ruff: noqa: E501 (the case table reads best one case a line)
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import engine
import engine.functional as F


def _cuda_or_skip():
    try:
        return engine.device("cuda")
    except Exception:  # noqa: BLE001
        pytest.skip("no cuda (neither CuPy nor the stand-in)")


def _grads(fn, arrays, device, create_graph=False):
    ts = [engine.tensor(a, device=device, requires_grad=True) for a in arrays]
    y = fn(*ts)
    v = engine.tensor(np.random.default_rng(7).standard_normal(y.shape), device=device)
    if not create_graph:
        (y * v).sum().backward()
        return [t.grad.cpu().numpy() for t in ts]
    gs = engine.autograd.grad((y * v).sum(), ts, create_graph=True)
    sum(g.square().sum() for g in gs).backward()
    return [None if t.grad is None else t.grad.cpu().numpy() for t in ts]  # b: linear, None


CASES = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, 2, 1), (2, 4, 7, 7), (6, 4, 3, 3)),
    ("conv2d groups", lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 2), (2, 4, 5, 5), (6, 2, 3, 3)),
    ("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1), (2, 4, 4, 4), (4, 3, 4, 4)),
    ("conv_transpose2d groups", lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 0, 2), (2, 4, 4, 4), (4, 3, 4, 4)),
]  # fmt: skip


@pytest.mark.parametrize("create_graph", [False, True], ids=["first", "second"])
@pytest.mark.parametrize("name,fn,xs,ws", CASES, ids=[c[0] for c in CASES])
def test_cuda_conv_gradients_equal_the_cpu(name, fn, xs, ws, create_graph):
    cuda = _cuda_or_skip()
    rng = np.random.default_rng(0)
    bias_size = ws[0] if name.startswith("conv2d") else ws[1] * (2 if "groups" in name else 1)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(bias_size)]
    want = _grads(fn, arrays, "cpu", create_graph)
    got = _grads(fn, arrays, cuda, create_graph)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            assert_close(g, w, 1e-9)


def test_conv_transpose2d_backward_twice_with_retain_graph():
    cuda = _cuda_or_skip()
    rng = np.random.default_rng(1)
    x = engine.tensor(rng.standard_normal((2, 4, 3, 3)), device=cuda, requires_grad=True)
    w = engine.tensor(rng.standard_normal((4, 2, 4, 4)), device=cuda, requires_grad=True)
    y = F.conv_transpose2d(x, w, stride=2, padding=1).square().sum()
    y.backward(retain_graph=True)
    first = w.grad.cpu().numpy().copy()
    w.grad = None
    y.backward()
    assert_close(w.grad.cpu().numpy(), first, 0)


def test_the_weight_gradient_is_its_own_array():
    cuda = _cuda_or_skip()
    x = engine.randn(2, 3, 5, 5, device=cuda)
    w = engine.randn(4, 3, 3, 3, device=cuda, requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert w.grad.array.base is None and w.grad.shape == (4, 3, 3, 3)
