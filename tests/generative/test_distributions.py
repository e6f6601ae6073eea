"""Gaussians as network outputs: densities, KLs and F.gaussian_nll_loss against float64 references
and PyTorch; the full-covariance fit; the GaussianHead learning its own noise level; the collapse
of a generator trained by regression onto randomly paired data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check_gradients

import engine
import engine.functional as F
import layers as nn
import optimizers
from generative.distributions import (
    DiagonalNormal,
    GaussianHead,
    LatentGaussianGenerator,
    MultivariateNormal,
    PushforwardGenerator,
    kl_normal,
    kl_standard_normal,
    naive_mse_generator,
    normal_log_prob,
)


def _t(a, device, dtype=np.float64, requires_grad=False):
    return engine.tensor(np.asarray(a, dtype=dtype), device=device, requires_grad=requires_grad)


def _ref_log_normal(x, mean, var):
    """float64 log N(x; mean, var) per element."""
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


# -------------------------------------------------------------------------------------------
# F.gaussian_nll_loss: PyTorch's semantics


GNLL_CASES = [
    ((4, 3), (4, 3)),  # heteroscedastic
    ((4, 3), (4,)),  # one dim short: one variance per row
    ((4, 3), (4, 1)),  # trailing size-1 dim
    ((2, 3, 4, 4), (2, 1, 4, 4)),  # one variance shared over the channels
]


@pytest.mark.parametrize("shapes", GNLL_CASES, ids=lambda s: f"{s[0]}-{s[1]}")
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gaussian_nll_loss_matches_torch(shapes, full, reduction, device, torch):
    rng = np.random.default_rng(0)
    x_shape, v_shape = shapes
    mu, y = rng.standard_normal((2,) + x_shape)
    var = rng.uniform(0.05, 2.0, v_shape)
    var.flat[0] = 1e-9  # below eps: clamped, and the gradient still flows (as in torch)
    ours = [_t(a, device, np.float32, True) for a in (mu, var)]
    theirs = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in (mu, var)]
    out = F.gaussian_nll_loss(
        ours[0], _t(y, device, np.float32), ours[1], full=full, reduction=reduction
    )
    ref = torch.nn.functional.gaussian_nll_loss(
        theirs[0], torch.tensor(y, dtype=torch.float32), theirs[1], full=full, reduction=reduction
    )
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    cot = rng.standard_normal(ref.shape)
    out.backward(_t(cot, device, np.float32))
    ref.backward(torch.tensor(cot, dtype=torch.float32))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_gaussian_nll_loss_float64_reference_and_gradcheck(device):
    rng = np.random.default_rng(1)
    mu, y = rng.standard_normal((2, 3, 5))
    var = rng.uniform(0.2, 2.0, (3, 5))
    out = F.gaussian_nll_loss(
        _t(mu, device), _t(y, device), _t(var, device), full=True, reduction="sum"
    )
    assert out.item() == pytest.approx(-_ref_log_normal(y, mu, var).sum(), rel=1e-12)
    check_gradients(
        lambda m, v: F.gaussian_nll_loss(m, _t(y, device), v * v + 0.1, full=True),
        [mu, var],
        device=device,
    )


def test_gaussian_nll_loss_float_var_and_errors(device, torch):
    mu, y = np.random.default_rng(2).standard_normal((2, 4, 3))
    out = F.gaussian_nll_loss(_t(mu, device), _t(y, device), 0.5)
    ref = torch.nn.functional.gaussian_nll_loss(torch.tensor(mu), torch.tensor(y), 0.5)
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(_t(mu, device), _t(y, device), -1.0)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        F.gaussian_nll_loss(_t(mu, device), _t(y, device), engine.ones(3, 4, device=device))


# -------------------------------------------------------------------------------------------
# Diagonal Gaussians


def test_normal_log_prob_and_kls_against_float64_closed_forms(device):
    rng = np.random.default_rng(3)
    x, m1, m2 = rng.standard_normal((3, 4, 6))
    lv1, lv2 = rng.uniform(-2, 2, (2, 4, 6))
    v1, v2 = np.exp(lv1), np.exp(lv2)
    lp = normal_log_prob(_t(x, device), _t(m1, device), _t(lv1, device))
    np.testing.assert_allclose(lp.numpy(), _ref_log_normal(x, m1, v1), rtol=1e-12)
    kl = kl_normal(_t(m1, device), _t(lv1, device), _t(m2, device), _t(lv2, device))
    ref = 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)
    np.testing.assert_allclose(kl.numpy(), ref, rtol=1e-10, atol=1e-12)
    kl0 = kl_standard_normal(_t(m1, device), _t(lv1, device))
    np.testing.assert_allclose(kl0.numpy(), 0.5 * (-lv1 + v1 + m1**2 - 1), rtol=1e-10, atol=1e-12)
    same = kl_normal(_t(m1, device), _t(lv1, device), _t(m1, device), _t(lv1, device))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-12)


def test_diagonal_normal_matches_torch_distributions(device, torch):
    rng = np.random.default_rng(4)
    mean, x = rng.standard_normal((2, 5, 3))
    logvar = rng.uniform(-1, 1, (5, 3))
    q = DiagonalNormal(_t(mean, device), _t(logvar, device))
    ref = torch.distributions.Independent(
        torch.distributions.Normal(torch.tensor(mean), torch.tensor(np.exp(0.5 * logvar))), 1
    )
    prior = torch.distributions.Independent(
        torch.distributions.Normal(
            torch.zeros(5, 3, dtype=torch.float64), torch.ones(5, 3, dtype=torch.float64)
        ),
        1,
    )
    np.testing.assert_allclose(
        q.log_prob(_t(x, device)).numpy(), ref.log_prob(torch.tensor(x)).numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(q.entropy().numpy(), ref.entropy().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        q.kl_standard_normal().numpy(),
        torch.distributions.kl_divergence(ref, prior).numpy(),
        rtol=1e-10,
    )
    assert q.log_prob(_t(x, device)).shape == (5,)


def test_diagonal_normal_rsample_is_reparameterised(device):
    engine.manual_seed(0)
    mean = _t(np.full((20000, 2), [1.0, -2.0]), device, requires_grad=True)
    logvar = _t(np.full((20000, 2), [0.0, math.log(0.25)]), device, requires_grad=True)
    z = DiagonalNormal(mean, logvar).rsample()
    np.testing.assert_allclose(z.numpy().mean(0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(z.numpy().std(0), [1.0, 0.5], rtol=0.03)
    (z * z).sum().backward()  # d/dmean E[z^2] = 2 mean: flows through the sample
    np.testing.assert_allclose(mean.grad.numpy().mean(0), [2.0, -4.0], rtol=0.03)
    assert logvar.grad is not None
    # d/dlogvar E[z^2] = E[z * stddev * eps] = var
    np.testing.assert_allclose(logvar.grad.numpy().mean(0), [1.0, 0.25], atol=0.04)


def test_diagonal_normal_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        DiagonalNormal(engine.zeros(2, 3), engine.zeros(2, 4))


# -------------------------------------------------------------------------------------------
# Networks that output or push forward Gaussians


def test_gaussian_head_learns_input_dependent_noise(device):
    """y = 2x + exp(x) eps: the head's log-variance must learn 2x, its mean 2x."""
    engine.manual_seed(0)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (2048, 1))
    y = 2 * x + np.exp(x) * rng.standard_normal((2048, 1))
    head = GaussianHead(1, 1).to(device)
    opt = optimizers.Adam(head.parameters(), lr=0.1)
    xt, yt = _t(x, device, np.float32), _t(y, device, np.float32)
    first = None
    for _ in range(150):
        loss = head.loss(xt, yt)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    np.testing.assert_allclose(head.mean.weight.numpy(), [[2.0]], atol=0.15)
    np.testing.assert_allclose(head.logvar.weight.numpy(), [[2.0]], atol=0.25)
    np.testing.assert_allclose(head.logvar.bias.numpy(), [0.0], atol=0.15)
    # loss is the per-element NLL = -log_prob / dims
    assert loss.item() == pytest.approx(-head.log_prob(xt, yt).mean().item(), rel=1e-4)


def test_pushforward_and_latent_gaussian_generators(device):
    engine.manual_seed(0)
    push = PushforwardGenerator(nn.Linear(3, 5), latent_dim=3).to(device)
    assert push.sample(7).shape == (7, 5)
    head = GaussianHead(4, 2, min_logvar=-1.0, max_logvar=1.0)
    gen = LatentGaussianGenerator(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), head, 3).to(device)
    x = gen.sample(4000)
    assert x.shape == (4000, 2) and x.device == device
    dist = gen(engine.randn(6, 3, device=device))
    logvar = dist.logvar.numpy()
    assert ((logvar >= -1.0) & (logvar <= 1.0)).all()  # the soft clamp holds
    # sampling adds the head's noise: per-sample spread exceeds the spread of the means
    assert x.numpy().std(0).min() > 0.3


# -------------------------------------------------------------------------------------------
# Full-covariance Gaussian


def test_multivariate_normal_fit_recovers_planted_parameters(device):
    rng = np.random.default_rng(6)
    mean = np.array([1.0, -2.0, 0.5])
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    x = rng.multivariate_normal(mean, cov, size=20000)
    mvn = MultivariateNormal.fit(_t(x, device, np.float32))
    np.testing.assert_allclose(mvn.loc.numpy(), mean, atol=0.05)
    np.testing.assert_allclose(mvn.covariance_matrix.numpy(), cov, atol=0.1 * np.abs(cov).max())
    # exactly the maximum-likelihood (1/N) statistics
    np.testing.assert_allclose(mvn.loc.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mvn.covariance_matrix.numpy(), np.cov(x.T, bias=True), rtol=1e-4)
    # sampling reproduces the fitted moments
    engine.manual_seed(0)
    s = mvn.sample(20000).numpy()
    np.testing.assert_allclose(s.mean(0), mean, atol=0.06)
    np.testing.assert_allclose(np.cov(s.T), cov, atol=0.12 * np.abs(cov).max())


def test_multivariate_normal_log_prob_against_float64_and_torch(device, torch):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 4))
    cov, loc = a @ a.T + np.eye(4), rng.standard_normal(4)
    x = rng.standard_normal((6, 4))
    mvn = MultivariateNormal(_t(loc, device), _t(cov, device))
    ref = torch.distributions.MultivariateNormal(torch.tensor(loc), torch.tensor(cov))
    np.testing.assert_allclose(
        mvn.log_prob(_t(x, device)).numpy(), ref.log_prob(torch.tensor(x)).numpy(), rtol=1e-10
    )
    d = x - loc
    explicit = -0.5 * (
        np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + np.linalg.slogdet(2 * np.pi * cov)[1]
    )
    np.testing.assert_allclose(mvn.log_prob(_t(x, device)).numpy(), explicit, rtol=1e-10)
    check_gradients(lambda v: mvn.log_prob(v), [x], device=device)


def test_multivariate_normal_errors(device):
    with pytest.raises(ValueError, match="positive definite"):
        MultivariateNormal(
            engine.zeros(2, device=device), _t([[1.0, 2.0], [2.0, 1.0]], device, np.float32)
        )
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        MultivariateNormal(engine.zeros(3), engine.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        MultivariateNormal.fit(engine.zeros(1, 3))


# -------------------------------------------------------------------------------------------
# The naive approach


def test_mse_generator_on_random_pairs_collapses_to_the_mean_of_the_modes(device):
    """Four well-separated modes; the regressed generator puts every sample at their mean."""
    engine.manual_seed(0)
    rng = np.random.default_rng(8)
    modes = np.array([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]])
    data = modes[rng.integers(0, 4, 512)] + 0.1 * rng.standard_normal((512, 2))
    out = naive_mse_generator(_t(data, device, np.float32), steps=120, hidden=32, lr=1e-2)
    assert out["samples"].shape == (256, 2)
    assert out["data_spread"] == pytest.approx(2 * math.sqrt(2), rel=0.05)
    assert out["spread_ratio"] < 0.1  # samples sit at the mean, far from every mode
    samples = out["samples"].numpy()
    np.testing.assert_allclose(samples.mean(0), data.mean(0), atol=0.2)
    nearest_mode = np.linalg.norm(samples[:, None] - modes[None], axis=-1).min(1)
    assert nearest_mode.min() > 2.0
