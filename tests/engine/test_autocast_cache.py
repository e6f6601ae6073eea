"""Autocast's weight-cast cache (PyTorch's `cached_cast`): inside one autocast region a float32
parameter cast to the low dtype is cast once and reused; the cache empties at the outermost
exit; the gradient reaches the float32 parameter once per use, as PyTorch's does."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_torch, torch

import engine
import engine.functional as F
import optimizers
from engine import autocast_mode
from engine.dtypes import BFLOAT16
from engine.ops import shape

LOW = {"cpu": ("bfloat16", BFLOAT16), "cuda": ("float16", np.float16)}  # the stand-in: no bf16


@pytest.fixture
def casts_of(monkeypatch):
    """casts_of(t): how many casts of tensor t's array were made since the fixture started."""
    seen: list = []
    forward = shape.AsType.forward

    def counting(self, x):
        seen.append(x)
        return forward(self, x)

    monkeypatch.setattr(shape.AsType, "forward", counting)
    return lambda t: sum(1 for a in seen if a is t.array)


def _weights(device, seed=0):
    rng = np.random.default_rng(seed)
    x = engine.tensor(rng.standard_normal((5, 4)).astype(np.float32), device=device)
    w = engine.tensor(rng.standard_normal((3, 4)).astype(np.float32), device=device)
    return x, w.requires_grad_()


def test_a_weight_used_twice_in_a_region_is_cast_once(device, casts_of):
    name, low = LOW[device]
    x, w = _weights(device)
    with engine.autocast(device.split(":")[0], dtype=low):
        a = F.linear(x, w)
        b = F.linear(x * 2, w)
    assert casts_of(w) == 1
    assert a.dtype == b.dtype == low
    # The one cast is the weight rounded: both products read the same rounded weight.
    want = (
        x.to("cpu").numpy().astype(low).astype(np.float32)
        @ w.to("cpu").numpy().astype(low).astype(np.float32).T
    )
    np.testing.assert_allclose(a.float().to("cpu").numpy(), want.astype(low), rtol=1e-2)
    assert not autocast_mode._state.casts  # emptied at the region's exit


def test_a_new_region_casts_afresh_and_sees_the_optimizer_step(device, casts_of):
    name, low = LOW[device]
    dev = device.split(":")[0]
    x, w = _weights(device)
    opt = optimizers.SGD([w], lr=0.5)
    with engine.autocast(dev, dtype=low):
        F.linear(x, w).float().sum().backward()
    opt.step()
    with engine.autocast(dev, dtype=low):
        y = F.linear(x, w)
    assert casts_of(w) == 2
    want = F.linear(x.to(name), w.detach().to(name))  # the stepped weight, rounded
    np.testing.assert_array_equal(y.float().to("cpu").numpy(), want.float().to("cpu").numpy())


def test_an_in_place_change_inside_the_region_is_cast_again(device, casts_of):
    name, low = LOW[device]
    x, w = _weights(device)
    with engine.autocast(device.split(":")[0], dtype=low):
        F.linear(x, w)
        with engine.no_grad():
            w.mul_(2.0)
        y = F.linear(x, w)
    assert casts_of(w) == 2
    want = F.linear(x.to(name), w.detach().to(name))
    np.testing.assert_array_equal(y.float().to("cpu").numpy(), want.float().to("cpu").numpy())


def test_a_backward_inside_the_region_and_a_no_grad_cast_do_not_lose_gradients(device):
    """A cast whose graph a backward freed, or made under no_grad (no graph at all), is not
    reused: the next use records a cast of its own and its gradient reaches the weight."""
    name, low = LOW[device]
    x, w = _weights(device)
    with engine.autocast(device.split(":")[0], dtype=low):
        with engine.no_grad():
            F.linear(x, w)
        F.linear(x, w).float().sum().backward()
        first = w.grad.to("cpu").numpy().copy()
        F.linear(x, w).float().sum().backward()  # no "backward through the graph a second time"
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.to("cpu").numpy(), 2 * first)


def test_each_use_gives_its_gradient_exactly_once(device):
    """Two identical uses of one cached cast: their low-dtype gradients add (exactly, x + x)
    before the one cast back, so the float32 gradient is exactly twice one use's."""
    name, low = LOW[device]
    dev = device.split(":")[0]
    x, w = _weights(device)
    with engine.autocast(dev, dtype=low):
        F.linear(x, w).float().sum().backward()
    once = w.grad.to("cpu").numpy().copy()
    w.grad = None
    with engine.autocast(dev, dtype=low):
        loss = F.linear(x, w).float().sum() + F.linear(x, w).float().sum()
    loss.backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.to("cpu").numpy(), 2 * once)


@requires_torch
def test_the_gradient_of_a_shared_weight_matches_torch_autocast():
    """A discriminator applied to two batches in one region (the GAN step), bfloat16 on the
    CPU: the float32 weights' gradients are PyTorch's autocast ones (which cache the same way)."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((8, 6)).astype(np.float32) * 0.4
    w2 = rng.standard_normal((1, 8)).astype(np.float32) * 0.4
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    real = rng.standard_normal((16, 6)).astype(np.float32)
    fake = rng.standard_normal((16, 6)).astype(np.float32)
    grads = {}
    for lib, Fn, low in (
        (engine, F, engine.bfloat16),
        (torch, torch.nn.functional, torch.bfloat16),
        (torch, torch.nn.functional, None),  # float32: the size of bfloat16's own noise
    ):
        p1, p2, pb = (lib.tensor(a, requires_grad=True) for a in (w1, w2, b1))
        ac = engine.autocast if lib is engine else torch.autocast
        with ac("cpu", dtype=low or torch.bfloat16, enabled=low is not None):

            def d(v, p1=p1, p2=p2, pb=pb, Fn=Fn):
                return Fn.linear(Fn.leaky_relu(Fn.linear(v, p1, pb), 0.2), p2)

            ones = lib.tensor(np.ones((16, 1), np.float32))
            zeros = lib.tensor(np.zeros((16, 1), np.float32))
            bce = Fn.binary_cross_entropy_with_logits
            loss = bce(d(lib.tensor(real)), ones) + bce(d(lib.tensor(fake)), zeros)
        loss.backward()
        assert all(str(p.grad.dtype).endswith("float32") for p in (p1, p2, pb))
        grads[lib.__name__, low is None] = [
            np.asarray(p.grad.detach().numpy()) for p in (p1, p2, pb)
        ]
    for ours, theirs, exact in zip(
        grads["engine", False], grads["torch", False], grads["torch", True], strict=True
    ):
        noise = np.abs(theirs - exact).max()  # torch autocast's distance from float32
        assert np.abs(ours - theirs).max() <= 2 * noise, (ours, theirs, noise)
        np.testing.assert_allclose(ours, theirs, rtol=0.1, atol=0.05 * np.abs(theirs).max())


def test_nested_regions_share_the_cache_and_enabled_false_casts_nothing(casts_of):
    x, w = _weights("cpu")
    with engine.autocast("cpu"):
        assert F.linear(x, w).dtype == BFLOAT16
        with engine.autocast("cpu"):  # the inner region reuses the outer one's cast
            assert F.linear(x, w).dtype == BFLOAT16
        assert casts_of(w) == 1 and autocast_mode._state.casts  # the inner exit kept it
        with engine.autocast("cpu", enabled=False):
            y = F.linear(x, w)
            assert y.dtype == np.float32
            np.testing.assert_array_equal(y.numpy(), (x @ w.T).detach().numpy())
        with engine.autocast("cpu", dtype=engine.float16):  # another dtype: a cast of its own
            assert F.linear(x, w).dtype == np.float16
        assert casts_of(w) == 2
        assert F.linear(x, w).dtype == BFLOAT16 and casts_of(w) == 2
    assert not autocast_mode._state.casts
    with engine.autocast("cpu"):
        F.linear(x, w)
    assert casts_of(w) == 3  # a new outermost region casts afresh


def test_only_leaves_that_require_grad_are_cached_and_exceptions_still_clear(casts_of):
    x, w = _weights("cpu")
    frozen = w.detach()  # a leaf without grad: PyTorch does not cache it either
    with engine.autocast("cpu"):
        F.linear(x, frozen)
        F.linear(x, frozen)
        F.linear(x, x)  # an activation (no grad): cast per use
    assert casts_of(frozen) == 2 and casts_of(x) == 4
    with pytest.raises(RuntimeError, match="boom"):
        with engine.autocast("cpu"):
            F.linear(x, w)
            raise RuntimeError("boom")
    assert not autocast_mode._state.casts
