"""WGAN-GP and R1 gradient penalties: closed forms, PyTorch's values and critic gradients."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import layers as nn
from regularizers import gradient_penalty, r1_penalty


def _mlp(m):
    return m.Sequential(m.Linear(6, 8), m.LeakyReLU(0.2), m.Linear(8, 1))


def _conv(m):
    return m.Sequential(
        m.Conv2d(2, 3, 3, padding=1), m.LeakyReLU(0.2), m.Flatten(), m.Linear(3 * 4 * 4, 1)
    )


def _copy(ours, theirs, device):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours.to(device)


def _assert_same_grads(ours, theirs):
    """Parameter gradients equal; a missing gradient on either side must be zero on the other
    (leaky_relu's second derivative is 0: torch returns zeros, our tape no path at all)."""
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        mine = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        ref = np.zeros(p.shape) if tp.grad is None else tp.grad.numpy()
        np.testing.assert_allclose(mine, ref, rtol=1e-3, atol=1e-5, err_msg=name)
    assert any(p.grad is not None and p.grad.numpy().any() for p in ours.parameters())


def test_closed_form_for_a_linear_critic(device):
    critic = nn.Linear(5, 1, bias=True).to(device)  # grad_x D = w everywhere
    w = critic.weight.numpy().astype(np.float64).ravel()
    real, fake = engine.randn(7, 5, device=device), engine.randn(7, 5, device=device)
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    assert gp.shape == () and gp.device == device
    assert gp.item() == pytest.approx(10.0 * (np.linalg.norm(w) - 1.0) ** 2, rel=1e-4)
    r1 = r1_penalty(critic, real, gamma=3.0)
    assert r1.item() == pytest.approx(1.5 * (w**2).sum(), rel=1e-5)
    # d r1 / d w = gamma * w: the double backward reaches the critic's weights.
    r1.backward()
    np.testing.assert_allclose(critic.weight.grad.numpy().ravel(), 3.0 * w, rtol=1e-5)
    assert real.grad is None and not real.requires_grad


@pytest.mark.parametrize("build, shape", [(_mlp, (5, 6)), (_conv, (3, 2, 4, 4))])
def test_wgan_gp_matches_torch(build, shape, device, torch):
    torch.manual_seed(0)
    theirs = build(torch.nn)
    ours = _copy(build(nn), theirs, device)
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((2,) + shape).astype(np.float32)
    alpha = rng.uniform(size=shape[0]).astype(np.float32)

    a = torch.tensor(alpha).reshape((-1,) + (1,) * (len(shape) - 1))
    x_hat = (a * torch.tensor(real) + (1 - a) * torch.tensor(fake)).requires_grad_(True)
    (g,) = torch.autograd.grad(theirs(x_hat).sum(), x_hat, create_graph=True)
    ref = 10.0 * ((g.reshape(shape[0], -1).norm(2, dim=1) - 1) ** 2).mean()
    ref.backward()

    gp = gradient_penalty(
        ours,
        engine.tensor(real, device=device),
        engine.tensor(fake, device=device, requires_grad=True),
        lambda_gp=10.0,
        alpha=engine.tensor(alpha, device=device),
    )
    assert gp.item() == pytest.approx(ref.item(), rel=1e-4)
    gp.backward()
    _assert_same_grads(ours, theirs)


def test_r1_matches_torch(device, torch):
    torch.manual_seed(1)
    theirs = _conv(torch.nn)
    ours = _copy(_conv(nn), theirs, device)
    real = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32)
    x = torch.tensor(real, requires_grad=True)
    (g,) = torch.autograd.grad(theirs(x).sum(), x, create_graph=True)
    ref = 5.0 * g.pow(2).reshape(3, -1).sum(1).mean()
    ref.backward()
    r1 = r1_penalty(ours, engine.tensor(real, device=device), gamma=10.0)
    assert r1.item() == pytest.approx(ref.item(), rel=1e-4)
    r1.backward()
    _assert_same_grads(ours, theirs)


def test_default_interpolation_is_seeded_and_conditional_critics_work(device):
    critic = _mlp(nn).to(device)
    labels = engine.randn(4, 6, device=device)
    real, fake = engine.randn(4, 6, device=device), engine.randn(4, 6, device=device)

    def conditional(x):
        return critic(x + labels)

    engine.manual_seed(5)
    a = gradient_penalty(conditional, real, fake).item()
    engine.manual_seed(5)
    b = gradient_penalty(conditional, real, fake).item()
    assert a == b and a > 0.0
    with engine.no_grad():  # the penalty records its own graph even under no_grad
        assert gradient_penalty(critic, real, fake).requires_grad


def test_errors_name_shapes():
    critic = nn.Linear(3, 1)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        gradient_penalty(critic, engine.zeros(4, 3), engine.zeros(5, 3))
    with pytest.raises(ValueError, match="one score per sample"):
        r1_penalty(lambda x: x.sum(), engine.zeros(4, 3))


@pytest.mark.parametrize("penalty", ["r1", "wgan-gp"])
# Relative error of the penalty and of each gradient: float16 (11-bit mantissa) within 1%;
# bfloat16 (8 bits) measured up to 12% on the conv weight's gradient, which is a difference of
# second-derivative terms through two roundings per op, so 20% (a wrong path is off by ~100%).
@pytest.mark.parametrize("dtype, tol", [("float16", 1e-2), ("bfloat16", 0.2)])
def test_penalty_under_autocast_with_a_grad_scaler_is_close_to_float32(device, penalty, dtype, tol):
    """The double backward under autocast (conv and linear in the low dtype, the penalty's
    input gradient recorded through them) with a GradScaler: the penalty and the unscaled
    critic gradients are float32 and within the low dtype's error of the float32 run."""
    if device.startswith("cuda") and dtype == "bfloat16":
        pytest.skip("the CuPy stand-in refuses bfloat16 arrays (CuPy 14's minimal bfloat16)")
    engine.manual_seed(0)
    critic = _conv(nn).to(device)
    rng = np.random.default_rng(0)
    real = engine.tensor(rng.standard_normal((4, 2, 4, 4)).astype(np.float32), device=device)
    fake = engine.tensor(rng.standard_normal((4, 2, 4, 4)).astype(np.float32), device=device)
    alpha = engine.tensor(rng.random(4).astype(np.float32), device=device)

    def loss_of(x):
        if penalty == "r1":
            return critic(x).mean() + r1_penalty(critic, x, gamma=10.0)
        return critic(x).mean() + gradient_penalty(critic, x, fake, alpha=alpha)

    def run(low):
        critic.zero_grad()
        scaler = engine.amp.GradScaler(init_scale=2.0**10, enabled=low is not None)
        with engine.autocast(device.split(":")[0], dtype=low or "float16", enabled=low is not None):
            loss = loss_of(real)
        scaler.scale(loss).backward()
        grads = [p.grad.numpy().copy() for p in critic.parameters()]
        if scaler.is_enabled():  # what unscale_ divides by, done here without an optimizer
            grads = [g / scaler.get_scale() for g in grads]
        return loss, grads

    ref_loss, ref_grads = run(None)
    loss, grads = run(dtype)
    assert loss.dtype == engine.float32 and all(g.dtype == np.float32 for g in grads)
    assert abs(float(loss) - float(ref_loss)) <= tol * abs(float(ref_loss))
    for g, r in zip(grads, ref_grads, strict=True):
        assert np.linalg.norm(g - r) <= tol * np.linalg.norm(r) + 1e-6
