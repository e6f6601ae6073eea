"""The VAE: the ELBO, its KL and the importance-weighted likelihood against closed forms on a
linear-Gaussian model (where log p(x) and the posterior are known exactly), gradients through the
reparameterised sample, short training runs, checkpoints and resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check_gradients

import engine
import layers as nn
from engine.data import DataLoader, TensorDataset
from generative.autoencoder_trainer import AutoencoderTrainer
from generative.encoders import build_networks
from generative.vae import VAE

D, L = 3, 2  # data and latent dimensions of the linear-Gaussian model


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with engine.no_grad():
        layer.weight.copy_(engine.tensor(weight))
        layer.bias.copy_(engine.tensor(bias))
    return layer


def linear_gaussian_vae(device, exact_posterior: bool = True, s2: float = 0.5):
    """p(z) = N(0, I), p(x | z) = N(W z + b, s2 I) with orthogonal columns of W, so the true
    posterior N(A x + c, Sigma) has a diagonal Sigma; q is that posterior, or a shifted, too
    narrow one. Returns (vae, W, b, s2)."""
    w = np.array([[1.0, 0.5], [-1.0, 1.0], [0.5, 1.5]])
    w[:, 1] -= w[:, 0] * (w[:, 0] @ w[:, 1]) / (w[:, 0] @ w[:, 0])  # orthogonal columns
    b = np.array([0.3, -0.2, 0.1])
    sigma = np.linalg.inv(np.eye(L) + w.T @ w / s2)
    assert np.allclose(sigma, np.diag(np.diag(sigma)))
    a = sigma @ w.T / s2
    c = -a @ b
    logvar = np.log(np.diag(sigma))
    if not exact_posterior:
        a, c, logvar = 0.8 * a, c + 0.3, logvar - 1.0
    enc_w = np.concatenate([a, np.zeros((L, D))])  # logvar does not depend on x
    enc_b = np.concatenate([c, logvar])
    vae = VAE(_linear(enc_w, enc_b), _linear(w, b), L, likelihood="gaussian").double()
    with engine.no_grad():
        vae.decoder_logvar.copy_(engine.tensor([math.log(s2)], dtype="float64"))
    return vae.to(device), w, b, s2


def exact_log_px(x: np.ndarray, w, b, s2) -> np.ndarray:
    cov = w @ w.T + s2 * np.eye(D)
    d = x - b
    return -0.5 * (
        np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + np.linalg.slogdet(2 * np.pi * cov)[1]
    )


def closed_form_elbo(vae, x: np.ndarray, w, b, s2) -> np.ndarray:
    enc = vae.encoder
    h = x @ enc.weight.numpy().T + enc.bias.numpy()
    mu, logvar = h[:, :L], h[:, L:]
    var = np.exp(logvar)
    resid = x - mu @ w.T - b
    trace = (var * (w * w).sum(0)).sum(1)  # tr(W diag(var) W^T)
    expected_log_px = -0.5 * D * np.log(2 * np.pi * s2) - ((resid**2).sum(1) + trace) / (2 * s2)
    kl = 0.5 * (var + mu**2 - 1 - logvar).sum(1)
    return expected_log_px - kl, kl


def _data(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, D)) * 1.5


# -------------------------------------------------------------------------------------------
# Closed forms


def test_true_posterior_makes_the_bounds_exact(device):
    """With q = p(z | x) every importance weight is p(x): the IW estimate is log p(x) exactly for
    every k, and the ELBO (whose closed form is then log p(x)) is unbiased for it."""
    vae, w, b, s2 = linear_gaussian_vae(device)
    x = _data()
    truth = exact_log_px(x, w, b, s2)
    np.testing.assert_allclose(closed_form_elbo(vae, x, w, b, s2)[0], truth, rtol=1e-12)
    engine.manual_seed(0)
    for k in (1, 7):
        np.testing.assert_allclose(
            vae.log_likelihood(engine.tensor(x, device=device), k=k).numpy(), truth, rtol=1e-10
        )
    reps = 20000
    draws = vae.elbo(engine.tensor(np.repeat(x, reps, axis=0), device=device))
    draws = draws.numpy().reshape(len(x), reps)
    assert (np.abs(draws.mean(1) - truth) < 4 * draws.std(1) / math.sqrt(reps)).all()


def test_kl_and_elbo_against_closed_forms(device):
    vae, w, b, s2 = linear_gaussian_vae(device, exact_posterior=False)
    x = _data(4)
    elbo_ref, kl_ref = closed_form_elbo(vae, x, w, b, s2)
    np.testing.assert_allclose(
        vae.posterior(engine.tensor(x, device=device)).kl_standard_normal().numpy(),
        kl_ref,
        rtol=1e-12,
    )
    # Monte-Carlo mean of the one-sample ELBO over 20,000 draws per point
    reps = 20000
    xt = engine.tensor(np.repeat(x, reps, axis=0), device=device)
    engine.manual_seed(1)
    draws = vae.elbo(xt).numpy().reshape(len(x), reps)
    stderr = draws.std(1) / math.sqrt(reps)
    assert (np.abs(draws.mean(1) - elbo_ref) < 4 * stderr + 1e-9).all()
    assert (elbo_ref < exact_log_px(x, w, b, s2)).all()  # a strict bound: q is wrong


def test_importance_weighted_estimate_is_above_the_elbo_and_tightens_with_k(device):
    vae, w, b, s2 = linear_gaussian_vae(device, exact_posterior=False)
    x = _data(3, seed=2)
    truth = exact_log_px(x, w, b, s2)
    elbo_ref, _ = closed_form_elbo(vae, x, w, b, s2)
    xt = engine.tensor(np.repeat(x, 200, axis=0), device=device)  # average 200 estimates
    engine.manual_seed(2)
    means = {
        k: vae.log_likelihood(xt, k=k).numpy().reshape(3, 200).mean(1) for k in (1, 10, 100, 1000)
    }
    np.testing.assert_allclose(means[1], elbo_ref, atol=0.15)  # k = 1 is the ELBO
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        assert (means[large] > means[small]).all(), (small, large, means)
    assert (means[1000] <= truth + 0.01).all()
    assert (truth - means[1000] < 0.2 * (truth - elbo_ref)).all()  # most of the gap closed


def test_bernoulli_elbo_closed_form_with_a_constant_decoder(device, torch):
    """A decoder that ignores z: log p(x|z) = sum x log s(b) + (1-x) log s(-b), exactly."""
    rng = np.random.default_rng(3)
    enc_w, enc_b = rng.standard_normal((2 * L, 6)) * 0.5, rng.standard_normal(2 * L) * 0.5
    dec_b = rng.standard_normal(6)
    vae = VAE(_linear(enc_w, enc_b), _linear(np.zeros((6, L)), dec_b), L).double().to(device)
    x = (rng.uniform(size=(4, 6)) < 0.5).astype(np.float64)
    log_px = x * np.log(1 / (1 + np.exp(-dec_b))) + (1 - x) * np.log(1 / (1 + np.exp(dec_b)))
    h = x @ enc_w.T + enc_b
    mu, logvar = h[:, :L], h[:, L:]
    kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1)
    engine.manual_seed(0)
    np.testing.assert_allclose(
        vae.elbo(engine.tensor(x, device=device)).numpy(), log_px.sum(1) - kl, rtol=1e-12
    )
    ref = -torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(np.broadcast_to(dec_b, x.shape)), torch.tensor(x), reduction="sum"
    )
    assert log_px.sum() == pytest.approx(ref.item(), rel=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_gradient_through_the_reparameterised_sample(likelihood, device):
    """float64 central differences of the whole bound (encoder, sample, decoder, KL) in x."""
    engine.manual_seed(0)
    enc, dec = build_networks("mlp", (1, 2, 2), L, 2 * L, width=5)
    vae = VAE(enc, dec, L, likelihood=likelihood).double().to(device)
    x = np.random.default_rng(4).uniform(0.1, 0.9, (3, 1, 2, 2))

    def bound(xt):
        engine.manual_seed(7)  # the same eps at every evaluation
        return vae.elbo(xt)

    check_gradients(bound, [x], device=device)


# -------------------------------------------------------------------------------------------
# API and errors


def test_sampling_shapes_and_ranges(device):
    engine.manual_seed(0)
    enc, dec = build_networks("mlp", (1, 4, 4), 3, 6, width=8)
    vae = VAE(enc, dec, 3).to(device)
    means = vae.sample(5)
    assert means.shape == (5, 1, 4, 4) and means.device == device and not means.requires_grad
    assert 0.0 <= means.numpy().min() and means.numpy().max() <= 1.0
    draws = vae.sample(5, mean=False).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    x = engine.rand(2, 1, 4, 4, device=device)
    assert vae.reconstruct(x).shape == (2, 1, 4, 4)
    assert vae.encode(x).shape == (2, 3)
    assert vae.interpolate(x[0], x[1], steps=4).shape == (4, 1, 4, 4)


def test_errors_name_the_shapes():
    enc, dec = build_networks("mlp", (1, 4, 4), 3, 5, width=8)  # 5 != 2 * latent_dim
    vae = VAE(enc, dec, 3)
    with pytest.raises(ValueError, match=r"\(N, 6\).*\(2, 5\)"):
        vae.elbo(engine.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="likelihood"):
        VAE(enc, dec, 3, likelihood="poisson")
    with pytest.raises(ValueError, match="k must"):
        VAE(*build_networks("mlp", (1, 4, 4), 3, 6), 3).log_likelihood(engine.rand(2, 1, 4, 4), 0)
    with pytest.raises(TypeError, match="prior"):
        vae.fit_latent_gaussian(engine.rand(2, 1, 4, 4))


# -------------------------------------------------------------------------------------------
# Training, checkpoints


def _tiny_digits(n_train=192, n_test=64):
    train, test = engine.data.load_digits()

    def binar(d, n):
        x = (d.tensors[0].numpy()[:n] > 0.5).astype(np.float32)
        return TensorDataset(x, d.tensors[1].numpy()[:n])

    return binar(train, n_train), binar(test, n_test)


def _trainer(arch, device, out_dir=None, width=None, likelihood="bernoulli", lr=3e-3):
    engine.manual_seed(0)
    enc, dec = build_networks(arch, (1, 8, 8), 4, 8, width=width)
    vae = VAE(enc, dec, 4, likelihood=likelihood)
    _, test = _tiny_digits()
    return AutoencoderTrainer(
        vae,
        lr=lr,
        test_data=test,
        task="vae",
        device=device,
        seed=0,
        out_dir=out_dir,
        progress=False,
    )


@pytest.mark.parametrize(
    "arch,width,likelihood",
    [("mlp", 32, "bernoulli"), ("mlp", 32, "gaussian"), ("conv", 4, "bernoulli")],
)
def test_short_training_run_reduces_the_test_negative_elbo(arch, width, likelihood, device):
    trainer = _trainer(
        arch, device, width=width, likelihood=likelihood, lr=1e-2 if arch == "conv" else 3e-3
    )
    train, test = _tiny_digits()
    before = trainer.model.evaluate(test, samples=3)["loss"]
    history = trainer.fit(DataLoader(train, 32, shuffle=True, seed=0), 3)
    after = trainer.model.evaluate(test, samples=3)["loss"]
    assert after < before - (5.0 if likelihood == "bernoulli" else 1.0), (before, after)
    assert len(history["test_neg_elbo"]) == 3 and history["loss"][-1] < history["loss"][0]


def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    train, _ = _tiny_digits()
    full = _trainer("mlp", "cpu", width=16)
    full.fit(DataLoader(train, 32, shuffle=True, seed=0), 2)

    first = _trainer("mlp", "cpu", out_dir=tmp_path, width=16)
    first.fit(DataLoader(train, 32, shuffle=True, seed=0), 1)
    state = engine.load(tmp_path / "checkpoint.npz")
    assert state["task"] == "vae" and state["epoch"] == 1

    resumed = _trainer("mlp", "cpu", width=16)
    resumed.load_checkpoint(tmp_path / "checkpoint.npz")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    resumed.fit(DataLoader(train, 32, shuffle=True, seed=0), 2)
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert resumed.history["test_neg_elbo"] == full.history["test_neg_elbo"]


def test_checkpoint_loads_onto_either_device(tmp_path, device):
    trainer = _trainer("mlp", "cpu", out_dir=tmp_path, width=16)
    train, _ = _tiny_digits(64)
    trainer.fit(DataLoader(train, 32, shuffle=True, seed=0), 1)
    other = _trainer("mlp", device, width=16)
    other.load_checkpoint(tmp_path / "checkpoint.npz")
    z = engine.tensor(np.random.default_rng(5).standard_normal((4, 4)).astype(np.float32))
    a = trainer.model.generate(z).numpy()
    b = other.model.generate(z.to(device))
    assert b.device == device
    np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
