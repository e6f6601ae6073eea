"""Tensor.register_hook and register_post_accumulate_grad_hook: PyTorch's semantics, checked
against torch where it is installed, and the order that DistributedDataParallel relies on."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_torch, torch

import engine
from engine import autograd


def _graph(lib, x, w):
    """A leaf used twice (w) and a non-leaf used twice (h): hooks see the sums."""
    h = x @ w
    return ((h * h).sum() + (h * w).sum()) * 0.5


@requires_torch
def test_hooks_match_torch_sums_replacement_and_order():
    rng = np.random.default_rng(0)
    xa, wa = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    logs = {}
    for name, lib in (("ours", engine), ("torch", torch)):
        x = lib.tensor(xa, requires_grad=True)
        w = lib.tensor(wa, requires_grad=True)
        log = logs[name] = []
        h = x @ w
        h.register_hook(lambda g, log=log: log.append(("h", np.array(g.tolist()))))
        w.register_hook(lambda g, log=log: log.append(("w", np.array(g.tolist()))) or g * 2)
        w.register_post_accumulate_grad_hook(
            lambda p, log=log: log.append(("w.grad", np.array(p.grad.tolist())))
        )
        loss = ((h * h).sum() + (h * w).sum()) * 0.5
        loss.backward()
        log.append(("x.grad", np.array(x.grad.tolist())))
    assert [k for k, _ in logs["ours"]] == [k for k, _ in logs["torch"]]
    assert len(logs["ours"]) == 4  # each hook once per backward, with the summed gradient
    for (_, a), (_, b) in zip(logs["ours"], logs["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_hook_replaces_the_accumulated_gradient_and_remove_unregisters(device):
    w = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    handle = w.register_hook(lambda g: g * 10)
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [30.0, 30.0])
    handle.remove()
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 3.0])
    assert autograd._live_hooks >= 0


def test_post_accumulate_sees_accumulated_grad_and_runs_before_backward_returns(device):
    w = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    seen, order = [], []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    (w * 2).sum().backward()
    (w * 2).sum().backward()  # accumulates: the hook sees 2 + 2
    np.testing.assert_allclose(seen[0], [2.0, 2.0])
    np.testing.assert_allclose(seen[1], [4.0, 4.0])

    # queue_callback runs after every hook of the walk, before backward() returns
    def post(p):
        order.append("hook")
        autograd.queue_callback(lambda: order.append("callback"))

    v = engine.tensor([1.0], device=device, requires_grad=True)
    v.register_post_accumulate_grad_hook(post)
    (v * w[:1]).sum().backward()
    assert order == ["hook", "callback"]


def test_leaf_hook_fires_early_not_at_the_end_of_the_walk():
    """A parameter near the output is settled while backward still works on earlier layers:
    the property DDP's overlap rests on."""
    x = engine.tensor(np.ones((2, 4)), requires_grad=False)
    w1 = engine.tensor(np.ones((4, 4)), requires_grad=True)
    w2 = engine.tensor(np.ones((4, 4)), requires_grad=True)
    events = []
    w1.register_post_accumulate_grad_hook(lambda p: events.append("w1"))
    w2.register_post_accumulate_grad_hook(lambda p: events.append(("w2", w1.grad is None)))
    (engine.tanh(x @ w1) @ w2).sum().backward()
    assert events == [("w2", True), "w1"]


def test_hooks_in_engine_grad_and_errors():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    post = []
    x.register_hook(lambda g: g + 1)
    x.register_post_accumulate_grad_hook(lambda p: post.append(1))
    (g,) = engine.grad((x * x).sum(), (x,))
    np.testing.assert_allclose(g.numpy(), [3.0, 5.0])  # gradient hooks apply in grad() too
    assert post == [] and x.grad is None  # grad() accumulates nothing
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        engine.tensor([1.0]).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(RuntimeError, match="during a backward"):
        autograd.queue_callback(lambda: None)


def test_hooked_leaf_whose_other_use_gets_no_gradient_still_settles():
    """w feeds a branch whose output is unused: that use never reports, the walk settles w at
    its end (a DDP bucket must never wait forever)."""
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    _, unused = (w * 2).sum(), (w * 5).sum()
    y = (w * 3).sum()
    y.backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    del unused
