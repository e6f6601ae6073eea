"""Every optimizer against its textbook formula, written out as an explicit float64 loop, on
a small quadratic f(w) = 1/2 sum(a w^2) + sum(b w) whose gradient is a w + b.

The engine computes the gradients by autograd; the loops use the closed form. Runs on every
device (cuda: the fused RawKernels, through the CuPy stand-in where there is no GPU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
import optimizers as optim

A = np.array([[0.5, 1.0, 2.0], [4.0, 0.25, 3.0]])
B = np.array([[0.3, -0.2, 0.1], [-0.4, 0.5, 0.0]])
W0 = np.array([[1.0, -2.0, 0.5], [0.7, 1.5, -1.2]])
STEPS = 25


def grad_f(w: np.ndarray) -> np.ndarray:
    return A * w + B


def run_engine(cls, device, steps: int = STEPS, w0: np.ndarray = W0, **kw) -> list[np.ndarray]:
    """The iterates w_1..w_steps of ``cls(**kw)`` on the quadratic, gradients by autograd."""
    w = engine.tensor(w0, dtype=np.float64, device=device, requires_grad=True)
    a = engine.tensor(A, device=device)
    b = engine.tensor(B, device=device)
    opt = cls([w], **kw)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (0.5 * a * w * w).sum() + (b * w).sum()
        loss.backward()
        opt.step()
        assert w.device == device and w.dtype == np.float64
        out.append(w.numpy().copy())
    return out


def assert_trajectory(ours: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(ours) == len(expected)
    for t, (o, e) in enumerate(zip(ours, expected, strict=True), start=1):
        np.testing.assert_allclose(o, e, rtol=1e-11, atol=1e-13, err_msg=f"step {t}")
    # Not a vacuous comparison: the iterate moved.
    assert np.abs(expected[-1] - W0).max() > 1e-3


# ---------------------------------------------------------------- reference loops ----------


def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    w, buf, out = W0.copy(), None, []
    for _ in range(STEPS):
        g = grad_f(w)
        g = -g if maximize else g
        g = g + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
        out.append(w)
    return out


def ref_momentum(lr, mu, weight_decay=0.0):
    w, v, out = W0.copy(), np.zeros_like(W0), []
    for _ in range(STEPS):
        g = grad_f(w) + weight_decay * w
        v = mu * v - lr * g
        w = w + v
        out.append(w)
    return out


def ref_nesterov_lookahead(lr, mu):
    """Sutskever's form: the gradient at the look-ahead point theta + mu v.

    Returns the points the optimizer stores, theta + mu v (Bengio's reparameterisation).
    """
    theta, v, out = W0.copy(), np.zeros_like(W0), []
    for _ in range(STEPS):
        g = grad_f(theta + mu * v)
        v = mu * v - lr * g
        theta = theta + v
        out.append(theta + mu * v)
    return out


def ref_adam(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    decoupled=False,
    maximize=False,
):
    b1, b2 = betas
    w, m, v, vmax, out = W0.copy(), 0.0 * W0, 0.0 * W0, 0.0 * W0, []
    for t in range(1, STEPS + 1):
        g = grad_f(w)
        g = -g if maximize else g
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(w)
    return out


def ref_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    w, sq, gavg, buf, out = W0.copy(), 0.0 * W0, 0.0 * W0, 0.0 * W0, []
    for _ in range(STEPS):
        g = grad_f(w) + weight_decay * w
        sq = alpha * sq + (1 - alpha) * g * g
        gavg = alpha * gavg + (1 - alpha) * g
        avg = np.sqrt(sq - gavg**2 if centered else sq) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            w = w - lr * buf
        else:
            w = w - lr * g / avg
        out.append(w)
    return out


def ref_adagrad(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    w, out = W0.copy(), []
    acc = np.full_like(W0, initial_accumulator_value)
    for t in range(1, STEPS + 1):
        g = grad_f(w) + weight_decay * w
        acc = acc + g * g
        w = w - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(acc) + eps)
        out.append(w)
    return out


def ref_adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    w, sq, acc, out = W0.copy(), 0.0 * W0, 0.0 * W0, []
    for _ in range(STEPS):
        g = grad_f(w) + weight_decay * w
        sq = rho * sq + (1 - rho) * g * g
        delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        w = w - lr * delta
        out.append(w)
    return out


# ---------------------------------------------------------------- tests --------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05),
        dict(lr=0.01, maximize=True),
    ],
    ids=["plain", "momentum", "dampening-wd", "nesterov-wd", "maximize"],
)
def test_sgd(device, kw):
    assert_trajectory(run_engine(optim.SGD, device, **kw), ref_sgd(**kw))


@pytest.mark.parametrize("kw", [dict(lr=0.05, mu=0.9), dict(lr=0.02, mu=0.5, weight_decay=0.1)])
def test_momentum_textbook(device, kw):
    assert_trajectory(run_engine(optim.Momentum, device, **kw), ref_momentum(**kw))


def test_nesterov_matches_the_explicit_lookahead_formula(device):
    ours = run_engine(optim.Nesterov, device, lr=0.05, mu=0.9)
    assert_trajectory(ours, ref_nesterov_lookahead(lr=0.05, mu=0.9))
    # Taking the gradient after the momentum step changes the path.
    plain = run_engine(optim.Momentum, device, lr=0.05, mu=0.9)
    assert np.abs(ours[-1] - plain[-1]).max() > 1e-3


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.05),
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        dict(lr=0.05, amsgrad=True),
        dict(lr=0.01, maximize=True),
    ],
    ids=["default", "betas-eps-wd", "amsgrad", "maximize"],
)
def test_adam(device, kw):
    assert_trajectory(run_engine(optim.Adam, device, **kw), ref_adam(**kw))


@pytest.mark.parametrize("kw", [dict(lr=0.05), dict(lr=0.05, weight_decay=0.5, amsgrad=True)])
def test_adamw_decays_decoupled(device, kw):
    ref = ref_adam(**{"weight_decay": 1e-2, **kw}, decoupled=True)
    assert_trajectory(run_engine(optim.AdamW, device, **kw), ref)


def test_adamw_differs_from_adam_with_l2(device):
    adamw = run_engine(optim.AdamW, device, lr=0.05, weight_decay=0.5)
    adam = run_engine(optim.Adam, device, lr=0.05, weight_decay=0.5)
    assert np.abs(adamw[-1] - adam[-1]).max() > 1e-3


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.01),
        dict(lr=0.01, centered=True),
        dict(lr=0.005, momentum=0.9, weight_decay=0.1),
        dict(lr=0.005, alpha=0.9, momentum=0.5, centered=True, eps=1e-4),
    ],
    ids=["plain", "centered", "momentum-wd", "centered-momentum"],
)
def test_rmsprop(device, kw):
    assert_trajectory(run_engine(optim.RMSprop, device, **kw), ref_rmsprop(**kw))


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6),
    ],
)
def test_adagrad(device, kw):
    assert_trajectory(run_engine(optim.Adagrad, device, **kw), ref_adagrad(**kw))


@pytest.mark.parametrize("kw", [dict(), dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.1)])
def test_adadelta(device, kw):
    assert_trajectory(run_engine(optim.Adadelta, device, **kw), ref_adadelta(**kw))


@pytest.mark.parametrize(
    "cls, kw",
    [
        (optim.SGD, dict(lr=0.1, momentum=0.5)),
        (optim.Momentum, dict(lr=0.1)),
        (optim.Nesterov, dict(lr=0.1)),
        (optim.Adam, dict(lr=0.1)),
        (optim.AdamW, dict(lr=0.1)),
        (optim.RMSprop, dict(lr=0.05)),
        (optim.Adagrad, dict(lr=0.5)),
        (optim.Adadelta, dict(lr=1.0)),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_float32_stays_float32_and_descends(device, cls, kw):
    """A float32 parameter and its state stay float32; the loss goes down."""
    w = engine.tensor(W0.astype(np.float32), device=device, requires_grad=True)
    a = engine.tensor(A.astype(np.float32), device=device)
    b = engine.tensor(B.astype(np.float32), device=device)
    opt = cls([w], **kw)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (0.5 * a * w * w).sum() + (b * w).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert w.dtype == np.float32
    for value in opt.state[w].values():
        if isinstance(value, engine.Tensor):
            assert value.dtype == np.float32 and value.device == device
    assert losses[-1] < losses[0] - 0.5, losses
    w_star = -B / A
    best = 0.5 * (A * w_star**2).sum() + (B * w_star).sum()
    assert math.isfinite(losses[-1]) and losses[-1] >= best - 1e-4
