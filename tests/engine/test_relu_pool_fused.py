"""ReLU then max-pool: the pool's backward applies the ReLU's mask to gy before its scatter
(engine.ops.conv.MaxPool2d._relu_fused_backward) and the ReLU passes that gradient on. The
gradients must be the plain path's bit for bit (ties, zeros, signed zeros, inf, NaN), and the
fused path must step aside wherever dL/dy is seen or summed anywhere else."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import layers as nn
from engine.ops import conv as conv_ops


@pytest.fixture
def fused_calls(monkeypatch):
    """How often the fused path ran (returned a gradient)."""
    calls = []
    fused = conv_ops.MaxPool2d._relu_fused_backward

    def spy(self, gy):
        gx = fused(self, gy)
        calls.append(gx is not None)
        return gx

    monkeypatch.setattr(conv_ops.MaxPool2d, "_relu_fused_backward", spy)
    return calls


def _plain(monkeypatch):
    monkeypatch.setattr(conv_ops.MaxPool2d, "_relu_fused_backward", lambda self, gy: None)


def _nasty(shape, dtype, seed):
    """Values with many ties, exact zeros of both signs, infinities and NaN."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 4, size=shape).astype(dtype)  # ties and zeros everywhere
    flat = a.reshape(-1)
    picks = rng.choice(flat.size, size=(4, max(1, flat.size // 50)), replace=False)
    flat[picks[0]] = -0.0
    flat[picks[1]] = np.inf
    flat[picks[2]] = -np.inf
    flat[picks[3]] = np.nan
    return a


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _pool_relu_grad(xa, gya, kernel, stride):
    x = engine.tensor(xa, requires_grad=True)
    y = F.max_pool2d(F.relu(x * 1.0), kernel, stride)
    y.backward(engine.tensor(gya))
    return x.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((2, 3, 8, 8), 2, None),  # the tiled kernel
        ((2, 3, 9, 7), 2, None),  # cropped rows and columns
        ((1, 2, 9, 9), 3, None),
        ((2, 2, 8, 10), (2, 3), None),
        ((2, 2, 11, 11), 2, 3),  # disjoint windows with gaps: the general kernel
    ],
)
def test_fused_gradient_is_the_plain_one_bit_for_bit(
    monkeypatch, fused_calls, dtype, shape, kernel, stride
):
    xa = _nasty(shape, dtype, seed=0)
    geo_out = F.max_pool2d(engine.tensor(xa), kernel, stride).shape
    gya = _nasty(geo_out, dtype, seed=1)
    fused = _pool_relu_grad(xa, gya, kernel, stride)
    assert fused_calls == [True]
    _plain(monkeypatch)
    plain = _pool_relu_grad(xa, gya, kernel, stride)
    np.testing.assert_array_equal(_bits(fused), _bits(plain))


def test_overlapping_windows_keep_the_plain_path(fused_calls):
    x = engine.tensor(_nasty((1, 2, 7, 7), np.float32, 2), requires_grad=True)
    F.max_pool2d(F.relu(x * 1.0), 3, 2).sum().backward()
    assert fused_calls == [False]


def test_a_cnn_takes_the_fused_path_with_the_plain_gradients(monkeypatch, fused_calls):
    def grads():
        engine.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 7 * 7, 3),
        )  # fmt: skip
        x = engine.tensor(np.random.default_rng(3).standard_normal((4, 1, 28, 28)), dtype="float32")
        F.cross_entropy(model(x), engine.tensor(np.array([0, 1, 2, 1]))).backward()
        return [p.grad.numpy() for p in model.parameters()]

    fused = grads()
    assert fused_calls == [True, True]
    _plain(monkeypatch)
    for f, p in zip(fused, grads(), strict=True):
        np.testing.assert_array_equal(_bits(f), _bits(p))


def _x_and_gy():
    xa = _nasty((2, 3, 8, 8), np.float64, 4)
    gya = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    return engine.tensor(xa, requires_grad=True), engine.tensor(gya)


def _plain_dy(x, gy):
    """dL/dy of the ReLU's output y for L = <max_pool(y), gy>: the unmasked scatter."""
    y = F.relu(x.detach())
    y.requires_grad_(True)
    F.max_pool2d(y, 2).backward(gy)
    return y.grad.numpy()


def _plain_dx(x, gy):
    xd = x.detach().requires_grad_(True)
    F.max_pool2d(F.relu(xd), 2).backward(gy)
    return xd.grad.numpy()


def test_a_held_relu_output_keeps_the_plain_path(fused_calls):
    x, gy = _x_and_gy()
    h = F.relu(x)
    F.max_pool2d(h, 2).backward(gy)
    assert fused_calls == [False]
    np.testing.assert_array_equal(x.grad.numpy(), _plain_dx(x, gy))


def test_a_second_use_of_the_relu_output_is_summed_then_masked(fused_calls):
    x, gy = _x_and_gy()
    (F.max_pool2d(F.relu(x), 2) * gy).sum().backward()
    alone = x.grad.numpy().copy()
    x.grad = None
    y = F.relu(x)
    total = (F.max_pool2d(y, 2) * gy).sum() + (y * 3.0).sum()
    del y  # only the graph holds it now: the Mul node's inputs keep the pool off its fused path
    total.backward()
    assert fused_calls == [True, False]
    np.testing.assert_array_equal(x.grad.numpy(), alone + 3.0 * (x.numpy() > 0))


def test_retain_grad_and_hooks_see_the_unmasked_gradient(fused_calls):
    x, gy = _x_and_gy()
    seen = []
    y = F.relu(x)
    y.retain_grad()
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    p = F.max_pool2d(y, 2)
    del y  # (a variable alone would keep the plain path too)
    p.backward(gy)
    assert fused_calls == [False]
    np.testing.assert_array_equal(seen[0], _plain_dy(x, gy))
    np.testing.assert_array_equal(x.grad.numpy(), _plain_dx(x, gy))


def test_engine_grad_of_the_relu_output_is_unmasked(fused_calls):
    x, gy = _x_and_gy()
    y = F.relu(x)
    (dy,) = engine.grad(F.max_pool2d(y, 2), [y], gy)
    assert fused_calls == [False]
    np.testing.assert_array_equal(dy.numpy(), _plain_dy(x, gy))


def test_create_graph_keeps_the_recorded_path(fused_calls):
    x, gy = _x_and_gy()
    gy.requires_grad_(True)
    (dx,) = engine.grad(F.max_pool2d(F.relu(x), 2), [x], gy, create_graph=True)
    assert fused_calls == [False] and dx.grad_fn is not None
    np.testing.assert_array_equal(dx.numpy(), _plain_dx(x, gy))


def test_an_in_place_change_of_the_relu_output_still_raises(fused_calls):
    x, gy = _x_and_gy()
    y = F.relu(x)
    p = F.max_pool2d(y, 2)
    with engine.no_grad():  # (recorded, an in-place op on the graph is refused at once)
        y.mul_(2.0)
    del y
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        p.backward(gy)
    assert fused_calls == [False]


def test_an_in_place_change_of_the_pool_output_keeps_the_plain_path(fused_calls):
    x, gy = _x_and_gy()
    p = F.max_pool2d(F.relu(x), 2)
    with engine.no_grad():  # the pool's backward does not read p: allowed, unrecorded
        p.mul_(-1.0)  # p > 0 no longer tells where the ReLU passed gradient
    p.backward(gy)
    assert fused_calls == [False]
    np.testing.assert_array_equal(x.grad.numpy(), _plain_dx(x, gy))
