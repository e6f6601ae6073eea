"""Autoencoders: reconstruction losses, the latent Gaussian fit, sampling, latent arithmetic and
interpolation (checked exactly with a linear encoder), state round trips, short training runs,
and the PCA latent picture."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import layers as nn
from dataio.plots import pca_2d, save_latent_plot
from engine.data import DataLoader, TensorDataset
from generative.autoencoder import Autoencoder, encode_dataset
from generative.autoencoder_trainer import AutoencoderTrainer
from generative.encoders import build_networks

D, L = 6, 3


def linear_autoencoder(device, loss="mse", seed=0):
    """Encoder z = A x (no bias), decoder a small MLP: codes are known exactly."""
    engine.manual_seed(seed)
    enc = nn.Linear(D, L, bias=False)
    dec = nn.Sequential(nn.Linear(L, 8), nn.Tanh(), nn.Linear(8, D))
    return Autoencoder(enc, dec, loss=loss).double().to(device)


def _x(n, device, seed=1):
    return engine.tensor(np.random.default_rng(seed).standard_normal((n, D)), device=device)


def test_reconstruction_losses_match_the_functional_forms(device):
    model = linear_autoencoder(device, loss="mse")
    x = _x(5, device)
    out = model.decoder(model.encoder(x))
    expected = F.mse_loss(out, x, reduction="sum").item() / 5
    assert model.training_losses(x)["loss"].item() == pytest.approx(expected, rel=1e-12)
    assert model.reconstruct(x).shape == x.shape
    np.testing.assert_allclose(model(x).numpy(), out.numpy(), rtol=1e-12)

    bce = linear_autoencoder(device, loss="bce")
    p = engine.tensor(np.random.default_rng(2).uniform(size=(5, D)), device=device)
    logits = bce.decoder(bce.encoder(p))
    expected = F.binary_cross_entropy_with_logits(logits, p, reduction="sum").item() / 5
    assert bce.training_losses(p)["loss"].item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(bce.reconstruct(p).numpy(), logits.sigmoid().numpy(), rtol=1e-12)


def test_fit_latent_gaussian_is_the_mle_of_the_codes(device):
    model = linear_autoencoder(device)
    x = _x(500, device)
    a = model.encoder.weight.numpy()
    codes = x.numpy() @ a.T
    loader = DataLoader(
        TensorDataset(x, engine.zeros(500, device=device)), 64, shuffle=True, seed=0
    )
    mvn = model.fit_latent_gaussian(loader, eps=0.0)
    np.testing.assert_allclose(mvn.loc.numpy(), codes.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        mvn.covariance_matrix.numpy(), np.cov(codes.T, bias=True), rtol=1e-10, atol=1e-12
    )
    assert model.latent_dim == L
    # a Tensor works as the data too, and gives the same fit
    again = model.fit_latent_gaussian(x, eps=0.0)
    np.testing.assert_allclose(again.loc.numpy(), mvn.loc.numpy(), rtol=1e-12)


def test_sampling_decodes_draws_of_the_fitted_gaussian(device):
    model = linear_autoencoder(device)
    x = _x(300, device)
    with pytest.raises(RuntimeError, match="fit_latent_gaussian"):
        model.sample(3)
    mvn = model.fit_latent_gaussian(x)
    samples = model.sample(7)
    assert samples.shape == (7, D) and samples.device == device and not samples.requires_grad
    zero = engine.zeros(1, L, dtype="float64", device=device)
    np.testing.assert_allclose(
        model.generate(zero).numpy(),
        model.decode(mvn.loc.unsqueeze(0)).detach().numpy(),
        rtol=1e-12,
    )


def test_fitted_gaussian_follows_the_model_to_another_device_and_dtype(device):
    """Module.to converts the latent buffers in place; the cached Cholesky factor must follow
    (it used to stay on the fitting device/dtype, mixing a cuda loc with a cpu factor)."""
    model = linear_autoencoder("cpu")
    model.fit_latent_gaussian(_x(300, "cpu"))
    model.sample(2)  # builds and caches the factor on the cpu in float64
    model.to(device).float()
    mvn = model.latent_gaussian
    assert (mvn.scale_tril.device, mvn.scale_tril.dtype) == (engine.device(device), np.float32)
    samples = model.sample(5)
    assert samples.device == engine.device(device) and samples.dtype == np.float32
    assert np.isfinite(samples.numpy()).all()


def test_latent_arithmetic_with_a_linear_encoder(device):
    model = linear_autoencoder(device)
    a = model.encoder.weight.numpy()
    x_with, x_without, x = _x(40, device, 3), _x(30, device, 4), _x(5, device, 5)
    v = model.attribute_vector(x_with, x_without)
    np.testing.assert_allclose(
        v.numpy(), (x_with.numpy().mean(0) - x_without.numpy().mean(0)) @ a.T, rtol=1e-10
    )
    moved = model.apply_attribute(x, v, alpha=1.5)
    z = engine.tensor(x.numpy() @ a.T + 1.5 * v.numpy(), device=device)
    np.testing.assert_allclose(moved.numpy(), model.decode(z).detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        model.apply_attribute(x, v, 0.0).numpy(), model.reconstruct(x).detach().numpy(), rtol=1e-12
    )


def test_interpolate_endpoints_and_midpoint(device):
    engine.manual_seed(0)
    enc, dec = build_networks("mlp", (1, 4, 4), L, L, width=8)
    model = Autoencoder(enc, dec).double().to(device)
    x0, x1 = (
        engine.tensor(np.random.default_rng(s).uniform(size=(2, 1, 4, 4)), device=device)
        for s in (6, 7)
    )
    path = model.interpolate(x0, x1, steps=5)
    assert path.shape == (10, 1, 4, 4)
    rows = path.numpy().reshape(2, 5, 1, 4, 4)
    np.testing.assert_allclose(rows[:, 0], model.reconstruct(x0).detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(rows[:, -1], model.reconstruct(x1).detach().numpy(), rtol=1e-10)
    mid = model.decode((model.encode(x0) + model.encode(x1)) * 0.5).detach().numpy()
    np.testing.assert_allclose(rows[:, 2], mid, rtol=1e-10)
    assert model.interpolate(x0[0], x1[0], steps=3).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="differ in shape"):
        model.interpolate(x0, x1[0])


def test_state_dict_round_trip_carries_the_latent_gaussian(device):
    model = linear_autoencoder(device)
    model.fit_latent_gaussian(_x(100, device))
    state = model.state_dict()
    assert {"latent_loc", "latent_covariance"} <= set(state)
    fresh = linear_autoencoder(device, seed=9)
    fresh.load_state_dict(state)
    eps = engine.tensor(np.random.default_rng(0).standard_normal((4, L)), device=device)
    np.testing.assert_array_equal(fresh.generate(eps).numpy(), model.generate(eps).numpy())
    with pytest.raises(RuntimeError, match="Missing key"):
        linear_autoencoder(device).load_state_dict({"encoder.weight": state["encoder.weight"]})


def test_constructor_and_shape_errors():
    with pytest.raises(ValueError, match="loss"):
        Autoencoder(nn.Linear(2, 1), nn.Linear(1, 2), loss="l1")
    with pytest.raises(ValueError, match="divisible by 4"):
        build_networks("conv", (1, 6, 6), 2, 2)
    with pytest.raises(ValueError, match="arch"):
        build_networks("rnn", (1, 8, 8), 2, 2)
    bad = Autoencoder(nn.Flatten(), nn.Linear(16, 3), loss="mse")
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 16\)"):
        bad.training_losses(engine.rand(2, 16))


def _tiny_digits(n_train=192, n_test=64):
    train, test = engine.data.load_digits()

    def cut(d, n):
        return TensorDataset(d.tensors[0].numpy()[:n], d.tensors[1].numpy()[:n])

    return cut(train, n_train), cut(test, n_test)


@pytest.mark.parametrize("arch,loss", [("mlp", "bce"), ("conv", "mse")])
def test_trainer_reduces_the_loss_and_writes_its_outputs(arch, loss, device, tmp_path):
    train, test = _tiny_digits()
    engine.manual_seed(0)
    enc, dec = build_networks(arch, (1, 8, 8), 4, 4, width=16 if arch == "mlp" else 4)
    model = Autoencoder(enc, dec, loss=loss)
    trainer = AutoencoderTrainer(
        model,
        lr=1e-2,
        test_data=test,
        task="ae",
        device=device,
        seed=0,
        out_dir=tmp_path,
        progress=False,
        architecture={"model": arch},
    )
    before = model.evaluate(test)["loss"]
    history = trainer.fit(DataLoader(train, 32, shuffle=True, seed=0), 3)
    assert history["test_loss"][-1] < 0.8 * before
    assert model.latent_loc is not None  # refitted after each epoch
    # ... so the last fit is the mean code of the trained model (a stale fit would differ)
    codes = encode_dataset(model, train)[0].numpy().astype(np.float64)
    np.testing.assert_allclose(model.latent_loc.numpy(), codes.mean(0), rtol=1e-5, atol=1e-6)
    for name in ("samples.png", "metrics.json", "checkpoint.npz", "samples/epoch_0003.png"):
        assert (tmp_path / name).exists(), name
    state = engine.load(tmp_path / "checkpoint.npz")
    assert state["task"] == "ae" and state["config"]["model"] == arch
    assert "latent_loc" in state["networks"]["model"]


def test_pca_2d_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    z = np.random.default_rng(8).standard_normal((50, 5)) * [3, 2, 1, 0.5, 0.1]
    ours = pca_2d(z)
    ref = PCA(2).fit_transform(z)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-8, atol=1e-10)


def test_latent_plot_draws_one_colour_per_class(device, tmp_path):
    from PIL import Image

    model = linear_autoencoder(device)
    labels = np.repeat(np.arange(3), 20)
    x = engine.tensor(
        np.random.default_rng(9).standard_normal((60, D)) + labels[:, None] * 3.0, device=device
    )
    codes, got = encode_dataset(model, TensorDataset(x, engine.tensor(labels)))
    np.testing.assert_array_equal(got.numpy(), labels)
    save_latent_plot(codes, got, tmp_path / "latent.png", size=200)
    image = np.asarray(Image.open(tmp_path / "latent.png").convert("RGB"))
    assert image.shape == (200, 200, 3)
    for colour in [(31, 119, 180), (255, 127, 14), (44, 160, 44)]:
        assert (image == colour).all(-1).sum() > 20, colour
    with pytest.raises(ValueError, match="labels"):
        save_latent_plot(codes, labels[:10], tmp_path / "bad.png")
