"""clip_grad_norm_ / clip_grad_value_: same total norms and clipped gradients as torch.nn.utils."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from optimizers import clip_grad_norm_, clip_grad_value_

RNG = np.random.default_rng(11)
GRADS = [RNG.standard_normal((3, 4)), RNG.standard_normal(5), RNG.standard_normal((2, 2, 2))]


def with_grads(device, dtype=np.float32):
    params = []
    for g in GRADS:
        p = engine.zeros(g.shape, dtype=dtype, device=device, requires_grad=True)
        p.grad = engine.tensor(g, dtype=dtype, device=device)
        params.append(p)
    params.append(engine.zeros(2, dtype=dtype, device=device, requires_grad=True))  # no grad
    return params


def reference(max_norm, norm_type):
    flat = np.concatenate([g.ravel() for g in GRADS])
    if norm_type == math.inf:
        total = np.abs(flat).max()
    else:
        total = (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    coef = min(1.0, max_norm / (total + 1e-6))
    return total, [g * coef for g in GRADS]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm(device, norm_type, max_norm):
    params = with_grads(device, np.float64)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    want_total, want_grads = reference(max_norm, norm_type)
    assert isinstance(total, engine.Tensor) and total.shape == () and total.device == device
    np.testing.assert_allclose(total.item(), want_total, rtol=1e-12)
    for p, g in zip(params, want_grads, strict=False):
        assert p.grad.device == device
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-12)
    assert params[-1].grad is None
    if max_norm < want_total:
        clipped = np.concatenate([p.grad.numpy().ravel() for p in params[:-1]])
        norm = (
            np.abs(clipped).max()
            if norm_type == math.inf
            else ((np.abs(clipped) ** norm_type).sum() ** (1 / norm_type))
        )
        assert norm == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_matches_torch(torch, norm_type):
    ours = with_grads("cpu")
    theirs = [torch.zeros(g.shape, requires_grad=True) for g in GRADS]
    for t, g in zip(theirs, GRADS, strict=True):
        t.grad = torch.tensor(g, dtype=torch.float32)
    total = clip_grad_norm_(ours, 1.0, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    assert total.dtype == np.float32
    np.testing.assert_allclose(total.item(), want.item(), rtol=1e-6)
    for p, t in zip(ours, theirs, strict=False):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_single_tensor_and_broadcast_grad(device):
    w = engine.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    (w * 2.0).sum().backward()  # gradient 2 everywhere, norm sqrt(24)
    total = clip_grad_norm_(w, 1.0)
    assert total.item() == pytest.approx(math.sqrt(24.0))
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 2 / (math.sqrt(24) + 1e-6)))
    v = engine.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    v.sum().backward()  # autograd may leave a read-only broadcast view here
    clip_grad_norm_([v], 0.5)
    np.testing.assert_allclose(v.grad.numpy(), np.full((2, 3), 0.5 / (math.sqrt(6) + 1e-6)))


def test_clip_grad_norm_nonfinite_and_empty():
    params = with_grads("cpu")
    params[0].grad.array[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_([engine.zeros(3, requires_grad=True)], 1.0).item() == 0.0


def test_clip_grad_value(device, torch):
    params = with_grads(device)
    clip_grad_value_(params, 0.3)
    theirs = [torch.tensor(g, dtype=torch.float32, requires_grad=True) for g in GRADS]
    for t, g in zip(theirs, GRADS, strict=True):
        t.grad = torch.tensor(g, dtype=torch.float32)
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    for p, t in zip(params, theirs, strict=False):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    assert max(np.abs(p.grad.numpy()).max() for p in params[:-1]) == pytest.approx(0.3)


def test_clip_and_zero_grad_never_write_through_a_shared_gradient(device):
    # A gradient that is a view of another array (here a broadcast a user assigned) is replaced,
    # not written in place; asked through `.base`, which CuPy has (its flags have no writeable).
    import optimizers

    source = engine.tensor(np.full(3, 4.0), device=device)
    w = engine.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    w.grad = engine.Tensor._wrap(source.device.xp.broadcast_to(source.array, (2, 3)), source.device)
    clip_grad_value_([w], 1.0)
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((2, 3)))
    w.grad = engine.Tensor._wrap(source.device.xp.broadcast_to(source.array, (2, 3)), source.device)
    clip_grad_norm_([w], 1.0)
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 4 / (math.sqrt(96) + 1e-6)))
    w.grad = engine.Tensor._wrap(source.device.xp.broadcast_to(source.array, (2, 3)), source.device)
    optimizers.SGD([w], lr=0.1).zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(source.numpy(), np.full(3, 4.0))
