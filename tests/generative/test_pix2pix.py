"""Pix2Pix: steps, losses, the completion demo's pieces, checkpoints, a short run's quality."""

from __future__ import annotations

import math

import numpy
import pytest
from helpers import floats

import engine
from engine.data import DataLoader, TensorDataset
from generative.pix2pix import (
    CompletionGenerator,
    Pix2Pix,
    build_pix2pix,
    comparison_rows,
    completion_metrics,
    mask_lower,
    masked_pairs,
    pair_discriminator,
    sharpness,
)


def _pairs(digits, n=16, device="cpu"):
    y = digits[0].tensors[0][:n].to(device)
    return mask_lower(y), y


def _model(device="cpu", loss="bce", adversarial=True, seed=0, lambda_l1=10.0):
    engine.manual_seed(seed)
    g = CompletionGenerator((1, 8, 8), hidden=16, noise_dim=4)
    d = pair_discriminator((1, 8, 8), hidden=16)
    return Pix2Pix(
        g, d, lambda_l1=lambda_l1, loss=loss, adversarial=adversarial, lr=1e-2, device=device,
        progress=False,
    )  # fmt: skip


def _params(module):
    return [p.numpy().copy() for p in module.parameters()]


def _all_changed(before, module):
    return all(
        not numpy.array_equal(b, p.numpy())
        for b, p in zip(before, module.parameters(), strict=True)
    )


def _none_changed(before, module):
    return all(
        numpy.array_equal(b, p.numpy()) for b, p in zip(before, module.parameters(), strict=True)
    )


# ------------------------------------------------------------------------------------------
# One step


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_train_step_updates_both_networks(device, digits, loss):
    model = _model(device, loss)
    g0, d0 = _params(model.generator), _params(model.discriminator)
    losses = floats(model.train_step(_pairs(digits, device=device)))
    assert set(losses) == {"loss_d", "loss_g", "loss_g_adv", "l1"}
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["loss_g"] == pytest.approx(losses["loss_g_adv"] + 10.0 * losses["l1"], rel=1e-5)
    assert _all_changed(g0, model.generator) and _all_changed(d0, model.discriminator)
    assert model.generator.net[0].weight.device == device


def test_generator_step_leaves_the_frozen_discriminator_alone(device, digits):
    model = _model(device)
    x, y = _pairs(digits, device=device)
    d0, g0 = _params(model.discriminator), _params(model.generator)
    model.generator_step(x, y, model.generator(x))
    assert _none_changed(d0, model.discriminator) and _all_changed(g0, model.generator)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())  # restored


def test_discriminator_step_leaves_the_generator_alone(device, digits):
    model = _model(device)
    x, y = _pairs(digits, device=device)
    d0, g0 = _params(model.discriminator), _params(model.generator)
    model.discriminator_step(x, y, model.generator(x))
    assert _none_changed(g0, model.generator) and _all_changed(d0, model.discriminator)
    assert all(p.grad is None for p in model.generator.parameters())


def test_l1_only_baseline_trains_only_the_generator(digits):
    model = _model(adversarial=False)
    d0 = _params(model.discriminator)
    losses = floats(model.train_step(_pairs(digits)))
    assert set(losses) == {"l1", "loss_g"} and losses["loss_g"] == pytest.approx(10 * losses["l1"])
    assert _none_changed(d0, model.discriminator)


@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_losses_match_their_formulas(digits, loss):
    model = _model(loss=loss)
    x, y = _pairs(digits, 8)
    fake = model.generator(x)
    with engine.no_grad():
        real_s = model.discriminator(engine.cat([x, y], dim=1)).numpy().ravel().astype(float)
        fake_s = model.discriminator(engine.cat([x, fake], dim=1)).numpy().ravel().astype(float)
    l1 = numpy.abs(fake.detach().numpy() - y.numpy()).mean()
    if loss == "bce":
        softplus = lambda s: numpy.logaddexp(0.0, s)  # noqa: E731
        want_d = softplus(-real_s).mean() + softplus(fake_s).mean()
        want_g = softplus(-fake_s).mean() + 10.0 * l1
    else:
        want_d = ((real_s - 1) ** 2).mean() + (fake_s**2).mean()
        want_g = ((fake_s - 1) ** 2).mean() + 10.0 * l1
    got_g = floats(model.generator_step(x, y, fake))["loss_g"]  # G first: D's weights as measured
    assert got_g == pytest.approx(want_g, rel=1e-5)
    assert floats(model.discriminator_step(x, y, fake)) == pytest.approx(want_d, rel=1e-5)


def test_discriminator_sees_channel_concatenated_pairs(digits):
    seen = []
    model = _model()
    net = model.discriminator

    def spy(z):
        seen.append(z.shape)
        return net(z)

    model.discriminator = spy
    x, y = _pairs(digits, 4)
    model.discriminate(x, y)
    assert seen == [(4, 2, 8, 8)]


# ------------------------------------------------------------------------------------------
# The completion demo's pieces


def test_mask_lower_and_masked_pairs(device):
    x = engine.ones(2, 1, 8, 8, device=device)
    m = mask_lower(x)
    assert m.device == device
    assert numpy.all(m.numpy()[:, :, :4] == 1) and numpy.all(m.numpy()[:, :, 4:] == 0)
    assert numpy.all(mask_lower(x, rows=3).numpy()[:, :, 5:] == 0)
    assert numpy.all(mask_lower(x, rows=3).numpy()[:, :, :5] == 1)
    pairs = masked_pairs(TensorDataset(numpy.ones((3, 1, 8, 8), numpy.float32)))
    inp, tgt = pairs[0]
    assert inp.numpy()[:, 4:].sum() == 0 and tgt.numpy().sum() == 64


def test_completion_generator_keeps_the_known_rows_and_is_random(device):
    engine.manual_seed(0)
    g = CompletionGenerator((1, 8, 8), hidden=8, noise_dim=3).to(device)
    x = engine.rand(5, 1, 8, 8, device=device)
    a, b = g(x), g(x)
    assert a.shape == (5, 1, 8, 8) and a.device == device
    numpy.testing.assert_array_equal(a.numpy()[:, :, :4], x.numpy()[:, :, :4])
    assert not numpy.allclose(a.numpy()[:, :, 4:], b.numpy()[:, :, 4:])  # noise differs
    assert 0 < a.numpy().min() and a.numpy().max() < 1
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        g(engine.rand(2, 1, 6, 6))


def test_completion_generator_without_noise_is_deterministic():
    g = CompletionGenerator((1, 8, 8), hidden=8, noise_dim=0)
    x = engine.rand(2, 1, 8, 8)
    numpy.testing.assert_array_equal(g(x).numpy(), g(x).numpy())


def test_sharpness_by_hand():
    stripes = numpy.zeros((1, 1, 4, 4))
    stripes[..., 1::2] = 1.0  # vertical stripes: every horizontal step changes by 1
    s = sharpness(stripes)
    assert s["gradient"] == pytest.approx(1.0)
    # interior pixels: a 1 has neighbours 1+1+0+0 (Laplacian -2), a 0 has 0+0+1+1 (+2)
    lap = numpy.array([[-2.0, 2.0], [-2.0, 2.0]])
    assert s["laplacian_var"] == pytest.approx(lap.var())
    flat = sharpness(numpy.full((2, 1, 5, 5), 0.3))
    assert flat == {"gradient": pytest.approx(0.0), "laplacian_var": pytest.approx(0.0)}
    assert sharpness(stripes, rows=slice(1, 4))["gradient"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="N, C, H, W"):
        sharpness(numpy.zeros((4, 4)))
    with pytest.raises(ValueError, match="3x3"):
        sharpness(stripes, rows=slice(0, 2))


def test_blurring_lowers_sharpness(digits):
    x = digits[1].tensors[0].numpy().astype(numpy.float64)
    blurred = (x + numpy.roll(x, 1, 2) + numpy.roll(x, 1, 3) + numpy.roll(x, (1, 1), (2, 3))) / 4
    sx, sb = sharpness(x), sharpness(blurred)
    assert sb["gradient"] < sx["gradient"] and sb["laplacian_var"] < sx["laplacian_var"]


def test_completion_metrics_measure_only_the_masked_rows():
    t = numpy.zeros((2, 1, 8, 8))
    y = t.copy()
    y[:, :, :4] = 1.0  # errors in the known rows do not count
    y[:, :, 6:] = 0.5
    m = completion_metrics(y, t)
    assert m["l1"] == pytest.approx(0.25)  # rows 4..7: half of them off by 0.5
    assert set(m) == {"l1", "gradient", "laplacian_var"}
    with pytest.raises(ValueError, match="must be equal"):
        completion_metrics(y[:1], t)


def test_comparison_rows_interleaves_blocks():
    a = engine.tensor(numpy.arange(4, dtype=numpy.float32).reshape(4, 1, 1, 1))
    b = a + 10.0
    out = comparison_rows(a, b, nrow=2).numpy().ravel()
    numpy.testing.assert_array_equal(out, [0, 1, 10, 11, 2, 3, 12, 13])


# ------------------------------------------------------------------------------------------
# Translation, preview, errors


def test_translate_sample_and_preview(device, digits):
    model = _model(device)
    with pytest.raises(RuntimeError, match="set_preview"):
        model.sample(2)
    x, y = _pairs(digits, 30, device)
    out = model.translate(x)
    assert out.shape == (30, 1, 8, 8) and out.device == device and out.grad_fn is None
    model.set_preview(x, y)
    assert model.preview_inputs.shape[0] == Pix2Pix.preview_count
    assert model.sample(50).shape == (50, 1, 8, 8)
    grid = model.preview()
    assert grid.shape == (3 * Pix2Pix.preview_count, 1, 8, 8) and grid.device == device
    numpy.testing.assert_array_equal(grid.numpy()[:8], x.numpy()[:8])  # first row: inputs
    numpy.testing.assert_array_equal(grid.numpy()[16:24], y.numpy()[:8])  # third row: targets
    assert model.generator.training  # translate restores training mode


def test_first_batch_becomes_the_preview(digits):
    model = _model()
    x, y = _pairs(digits, 8)
    model.train_step((x, y))
    numpy.testing.assert_array_equal(model.preview_inputs.numpy(), x.numpy())


def test_eval_data_records_test_l1_per_epoch(digits):
    x, y = _pairs(digits, 32)
    engine.manual_seed(0)
    model = Pix2Pix(
        CompletionGenerator(hidden=16, noise_dim=0), pair_discriminator(hidden=16),
        lambda_l1=10.0, lr=1e-2, eval_data=(x, y), device="cpu", progress=False,
    )  # fmt: skip
    history = model.fit(DataLoader(TensorDataset(x, y), 16, shuffle=True, seed=0), 2)
    assert len(history["test_l1"]) == 2
    want = numpy.abs(model.translate(x).numpy() - y.numpy()).mean()
    assert history["test_l1"][-1] == pytest.approx(want, rel=1e-5)


def test_bad_arguments_are_named(digits):
    g, d = CompletionGenerator(hidden=4), pair_discriminator(hidden=4)
    with pytest.raises(ValueError, match="loss must be one of"):
        Pix2Pix(g, d, loss="hinge", device="cpu")
    with pytest.raises(ValueError, match="lambda_l1"):
        Pix2Pix(g, d, lambda_l1=-1.0, device="cpu")
    with pytest.raises(ValueError, match="no loss"):
        Pix2Pix(g, d, lambda_l1=0.0, adversarial=False, device="cpu")
    model = Pix2Pix(g, d, device="cpu")
    x, y = _pairs(digits, 4)
    with pytest.raises(ValueError, match=r"\(inputs, targets\)"):
        model.train_step((x,))
    with pytest.raises(ValueError, match="targets must be a Tensor of images"):
        model.train_step((x, y.reshape(4, 64)))
    wrong = Pix2Pix(
        CompletionGenerator(hidden=4), pair_discriminator(hidden=4), device="cpu", progress=False
    )
    with pytest.raises(ValueError, match=r"\(4, 1, 8, 8\).*\(4, 2, 8, 8\)"):
        wrong.train_step((x, engine.cat([y, y], dim=1)))
    with pytest.raises(ValueError, match="recipe settings"):
        build_pix2pix(device="cpu", depth=3)


# ------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_and_continued_training(device, tmp_path, digits):
    x, y = _pairs(digits, 32, device)
    loader = [(x[:16], y[:16]), (x[16:], y[16:])]
    a = _model(device, seed=1)
    a.fit(loader, 1)
    a.save_checkpoint(tmp_path / "p2p.npz")
    a_after_1 = [p.numpy().copy() for p in a.generator.parameters()]
    a.fit(loader, 2)
    b = _model(device, seed=2)
    b.load_checkpoint(tmp_path / "p2p.npz")  # restores the engine's random stream as well
    assert b.epoch == 1 and b.history["epoch"] == [1]
    for p, q in zip(a_after_1, b.generator.parameters(), strict=True):
        numpy.testing.assert_array_equal(p, q.numpy())
        assert q.device == device
    numpy.testing.assert_array_equal(a.preview_inputs.numpy(), b.preview_inputs.numpy())
    b.fit(loader, 2)
    assert b.epoch == 2 and all(math.isfinite(v) for v in b.history["loss_g"])
    if device != "cpu":
        return  # the engine checkpoints only the cpu random stream (cuda: its seed)
    # Same weights, optimizer state and random stream: the same second epoch.
    for key in ("loss_d", "loss_g", "l1"):
        assert b.history[key] == a.history[key]
    for p, q in zip(a.discriminator.parameters(), b.discriminator.parameters(), strict=True):
        numpy.testing.assert_array_equal(p.numpy(), q.numpy())
    for p, q in zip(a.discriminator.parameters(), b.discriminator.parameters(), strict=True):
        numpy.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-6, atol=1e-7)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    from generative.cyclegan import CycleGAN, conv_translator  # noqa: PLC0415
    from generative.models import mlp_discriminator  # noqa: PLC0415

    c = CycleGAN(conv_translator(width=2), conv_translator(width=2), mlp_discriminator(hidden=4),
                 mlp_discriminator(hidden=4), device="cpu")  # fmt: skip
    c.save_checkpoint(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="CycleGAN"):
        _model().load_checkpoint(tmp_path / "c.npz")


# ------------------------------------------------------------------------------------------
# A short run of the recipe (the full target is in reports/translation_report.py)


def test_short_run_is_near_the_l1_baseline_and_sharper(digits):
    """Reduced target: 10 epochs, 128 hidden units: pix2pix's masked-rows L1 within 10% of the
    L1-only baseline's, and sharper completions (both measures)."""
    train, test = digits
    x = test.tensors[0]
    results = {}
    for adversarial in (False, True):
        model = build_pix2pix(adversarial=adversarial, device="cpu", seed=0, progress=False,
                              hidden=128)  # fmt: skip
        model.fit(DataLoader(masked_pairs(train), 64, shuffle=True, seed=0), 10)
        results[adversarial] = completion_metrics(model.translate(mask_lower(x)), x)
    p2p, base = results[True], results[False]
    assert p2p["l1"] <= 1.10 * base["l1"]
    assert p2p["gradient"] > base["gradient"] and p2p["laplacian_var"] > base["laplacian_var"]
    assert p2p["l1"] < 0.2  # a real completion: filling in zeros scores about 0.3
