"""The fused training-mode batch norm (engine.ops.norm) against its composition in engine ops,
float64 gradcheck, double backward and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.ops.norm import batch_norm_train

SHAPES = [(6, 3), (5, 4, 7), (4, 3, 5, 6)]


def composed(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    c = x - x.mean(axes, keepdim=True)
    y = c * ((c * c).mean(axes, keepdim=True) + eps).rsqrt()
    if w is not None:
        y = y * w.reshape(shape)
    return y + b.reshape(shape) if b is not None else y


def _inputs(shape, dtype=np.float64, seed=0, affine=True):
    rng = np.random.default_rng(seed)
    x = engine.tensor(rng.standard_normal(shape).astype(dtype) * 3 + 1, requires_grad=True)
    if not affine:
        return x, None, None
    w = engine.tensor(rng.standard_normal(shape[1]).astype(dtype), requires_grad=True)
    b = engine.tensor(rng.standard_normal(shape[1]).astype(dtype), requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_matches_the_composition(shape, affine):
    x, w, b = _inputs(shape, affine=affine)
    y, mean, var = batch_norm_train(x, w, b, 1e-5)
    ref = composed(x, w, b)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(mean, x.numpy().mean(axes), rtol=1e-12)
    np.testing.assert_allclose(var, x.numpy().var(axes), rtol=1e-12)
    gy = engine.tensor(np.random.default_rng(1).standard_normal(shape))
    params = [t for t in (x, w, b) if t is not None]
    got = engine.grad(y, params, gy)
    want = engine.grad(ref, params, gy)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-9, atol=1e-10)


def test_bias_without_weight_and_partial_requires_grad():
    x, w, b = _inputs((5, 3, 4))
    w = None
    y, _, _ = batch_norm_train(x, w, b, 1e-5)
    gx, gb = engine.grad(y.sum() + (y * y).sum(), (x, b))
    rx, rb = engine.grad(composed(x, None, b).sum() + (composed(x, None, b) ** 2).sum(), (x, b))
    np.testing.assert_allclose(gx.numpy(), rx.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gb.numpy(), rb.numpy(), rtol=1e-9)
    x2, w2, b2 = _inputs((5, 3, 4))
    x2.requires_grad_(False)
    y2, _, _ = batch_norm_train(x2, w2, b2, 1e-5)
    y2.sum().backward()
    assert x2.grad is None and w2.grad is not None and b2.grad is not None


def test_float32_stays_float32():
    x, w, b = _inputs((8, 4, 3, 3), dtype=np.float32)
    y, mean, var = batch_norm_train(x, w, b, 1e-5)
    assert y.dtype == np.float32 and mean.dtype == np.float32 and var.dtype == np.float32
    y.backward(engine.ones_like(y))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_gradcheck():
    x, w, b = _inputs((4, 3, 2, 3), seed=2)
    assert engine.gradcheck(lambda x, w, b: batch_norm_train(x, w, b, 1e-5)[0], (x, w, b))


def test_double_backward_matches_the_composition():
    x, w, b = _inputs((4, 3, 2, 3), seed=3)
    gy = engine.tensor(np.random.default_rng(4).standard_normal(x.shape))

    def second(fn):
        gx, gw = engine.grad(fn(x, w, b), (x, w), gy, create_graph=True)
        return engine.grad((gx * gx).sum() + (gw * gw).sum(), (x, w, b), allow_unused=True)

    got = second(lambda x, w, b: batch_norm_train(x, w, b, 1e-5)[0])
    want = second(composed)
    for g, r in zip(got, want, strict=True):
        if r is None:
            assert g is None or np.allclose(g.numpy(), 0)
        else:
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-8, atol=1e-10)


def test_layer_matches_torch_over_steps():
    torch = pytest.importorskip("torch")
    import layers as nn

    ours, theirs = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    rng = np.random.default_rng(5)
    with engine.no_grad():
        ours.weight.copy_(engine.tensor(rng.standard_normal(3).astype(np.float32)))
    theirs.weight.data = torch.tensor(ours.weight.numpy().copy())
    for step in range(3):
        x = (rng.standard_normal((6, 3, 4, 5)) * (step + 1)).astype(np.float32)
        ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ey, ty = ours(ex), theirs(tx)
        g = rng.standard_normal(x.shape).astype(np.float32)
        (ey * ey + ey * engine.tensor(g)).sum().backward()
        (ty * ty + ty * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(ey.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-4)
    np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-4)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-5)
