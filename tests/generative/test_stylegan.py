"""The compact StyleGAN: building blocks vs PyTorch, training steps, mixing, truncation, R1."""

from __future__ import annotations

import json

import numpy
import pytest
from helpers import floats

import engine
import regularizers
from engine.data import DataLoader, TensorDataset
from generative.stylegan import (
    EqualizedLinear,
    MappingNetwork,
    ModulatedConv2d,
    StyleDiscriminator,
    StyleGAN,
    StyleGenerator,
    build_stylegan,
)
from generative.trainer import rng_state_preserved

# A tiny network: 4x4 constant -> 8x8, two style layers per resolution (4 ws).
TINY = dict(z_dim=8, w_dim=8, mapping_layers=2, channels=(8, 4))


def _tiny(device="cpu", seed=0, **kwargs) -> StyleGAN:
    options = dict(TINY, d_channels=(4, 4, 4), lr=1e-2, device=device, seed=seed, progress=False)
    return build_stylegan("digits", **{**options, **kwargs})


def _batch(digits, n=8, device="cpu"):
    return (digits[0].tensors[0][:n].to(device),)


def _params(module):
    return [p.numpy().copy() for p in module.parameters()]


def _changed(before, module):
    return [
        not numpy.array_equal(b, p.numpy())
        for b, p in zip(before, module.parameters(), strict=True)
    ]


# ------------------------------------------------------------------------------------------
# Building blocks


def _torch_modulated_conv(torch, x, weight, styles, demodulate, eps=1e-8):
    """StyleGAN2's fused form: per-sample weights, demodulated, as one grouped convolution."""
    n, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    wm = weight[None] * styles[:, None, :, None, None]  # (N, C_out, C_in, k, k)
    if demodulate:
        wm = wm * torch.rsqrt((wm * wm).sum((2, 3, 4)) + eps)[:, :, None, None, None]
    y = torch.nn.functional.conv2d(
        x.reshape(1, n * c_in, h, w), wm.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n
    )
    return y.reshape(n, c_out, h, w)


@pytest.mark.parametrize("demodulate,k", [(True, 3), (False, 1)])
def test_modulated_conv_matches_the_per_sample_weight_form_in_torch(torch, demodulate, k):
    """Scale -> shared conv -> rescale equals the grouped conv with per-sample demodulated
    weights (forward and gradients of x, the conv weight and the affine's weight)."""
    engine.manual_seed(0)
    conv = ModulatedConv2d(3, 5, k, w_dim=4, demodulate=demodulate)
    rng = numpy.random.default_rng(1)
    x_np = rng.standard_normal((2, 3, 6, 6)).astype(numpy.float32)
    w_np = rng.standard_normal((2, 4)).astype(numpy.float32)
    g_np = rng.standard_normal((2, 5, 6, 6)).astype(numpy.float32)
    x = engine.tensor(x_np, requires_grad=True)
    out = conv(x, engine.tensor(w_np))
    (out * engine.tensor(g_np)).sum().backward()

    tx = torch.tensor(x_np, requires_grad=True)
    t_weight = torch.tensor(conv.weight.numpy(), requires_grad=True)
    t_aff_w = torch.tensor(conv.affine.weight.numpy(), requires_grad=True)
    t_aff_b = torch.tensor(conv.affine.bias.numpy())
    a = conv.affine
    styles = torch.nn.functional.linear(
        torch.tensor(w_np), t_aff_w * a.weight_gain, t_aff_b * a.lr_multiplier
    )
    ref = _torch_modulated_conv(torch, tx, t_weight * conv.weight_gain, styles, demodulate)
    (ref * torch.tensor(g_np)).sum().backward()

    numpy.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(
        conv.weight.grad.numpy(), t_weight.grad.numpy(), rtol=1e-3, atol=1e-5
    )
    numpy.testing.assert_allclose(
        conv.affine.weight.grad.numpy(), t_aff_w.grad.numpy(), rtol=1e-3, atol=1e-5
    )


def test_modulated_conv_gradients_match_central_differences():
    engine.manual_seed(0)
    conv = ModulatedConv2d(2, 3, 3, w_dim=3).double()
    rng = numpy.random.default_rng(0)
    x = engine.tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)
    w = engine.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert engine.gradcheck(lambda x, w: conv(x, w), [x, w], atol=1e-6)


def test_demodulation_gives_unit_output_variance_for_unit_inputs():
    """With i.i.d. unit inputs each output channel has (about) unit variance, whatever the style."""
    engine.manual_seed(0)
    conv = ModulatedConv2d(64, 8, 3, w_dim=4)
    x = engine.randn(16, 64, 16, 16)
    w = engine.randn(16, 4) * 3.0
    with engine.no_grad():
        y = conv(x, w)[:, :, 1:-1, 1:-1].numpy()  # the border sees zero padding
    assert y.var() == pytest.approx(1.0, abs=0.1)


def test_equalized_linear_scales_at_runtime():
    engine.manual_seed(0)
    lin = EqualizedLinear(16, 4, bias_init=1.0, lr_multiplier=0.1)
    assert lin.weight.numpy().std() == pytest.approx(10.0, rel=0.3)  # N(0, 1/m^2) storage
    x = engine.randn(5, 16)
    want = x.numpy() @ (lin.weight.numpy() * 0.1 / 4.0).T + 1.0
    numpy.testing.assert_allclose(lin(x).detach().numpy(), want, rtol=1e-5, atol=1e-5)


def test_mapping_normalises_its_input():
    """Pixel norm first: z and any positive multiple of z map to the same w."""
    engine.manual_seed(0)
    mapping = MappingNetwork(8, 6, num_layers=3)
    z = engine.randn(4, 8)
    with engine.no_grad():
        numpy.testing.assert_allclose(
            mapping(z).numpy(), mapping(z * 5.0).numpy(), rtol=1e-5, atol=1e-6
        )


def test_generator_shapes_and_layer_groups():
    engine.manual_seed(0)
    g = StyleGenerator(**TINY)
    assert g.num_ws == 4 and g.synthesis.resolution == 8
    assert g.synthesis.layer_groups() == {"coarse": [0, 1], "middle": [2], "fine": [3]}
    ws = g.map(engine.randn(3, 8))
    assert ws.shape == (3, 4, 8)
    assert g.synthesis(ws).shape == (3, 1, 8, 8)
    three = StyleGenerator(z_dim=4, w_dim=4, channels=(4, 4, 4), start_resolution=2)
    assert three.synthesis.layer_groups() == {"coarse": [0, 1], "middle": [2, 3], "fine": [4, 5]}
    with pytest.raises(ValueError, match=r"\(N, 4, 8\)"):
        g.synthesis(engine.randn(3, 8))
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(ws, noise_mode="loud")


def test_noise_modes():
    """Random noise differs call to call, const is reproducible; strengths start at 0, so make
    them non-zero first."""
    engine.manual_seed(0)
    g = StyleGenerator(**TINY)
    for layer in g.synthesis.layers:
        layer.noise_strength.data.fill_(0.5)
    ws = g.map(engine.randn(2, 8))
    with engine.no_grad():
        r1, r2 = g.synthesis(ws, "random").numpy(), g.synthesis(ws, "random").numpy()
        c1, c2 = g.synthesis(ws, "const").numpy(), g.synthesis(ws, "const").numpy()
        n = g.synthesis(ws, "none").numpy()
    assert not numpy.allclose(r1, r2)
    numpy.testing.assert_array_equal(c1, c2)
    assert not numpy.allclose(c1, n)


def test_minibatch_stddev_feature():
    engine.manual_seed(0)
    d = StyleDiscriminator(8, (4, 4, 4), mbstd_group_size=4)
    x = engine.randn(8, 4, 2, 2)
    got = d.minibatch_stddev(x).numpy()
    a = x.numpy().reshape(4, 2, 4, 2, 2)
    want = numpy.sqrt(a.var(0) + 1e-8).mean((1, 2, 3))  # one value per group member slot
    assert got.shape == (8, 5, 2, 2)
    numpy.testing.assert_allclose(got[:, 4, 0, 0], numpy.tile(want, 4), rtol=1e-5)
    assert d(engine.randn(6, 1, 8, 8)).shape == (6, 1)  # a batch not divisible by the group


# ------------------------------------------------------------------------------------------
# Training steps


def test_train_step_updates_both_networks(device, digits):
    sg = _tiny(device)
    g0, d0 = _params(sg.generator), _params(sg.discriminator)
    w_avg0 = sg.generator.w_avg.numpy().copy()
    losses = floats(sg.train_step(_batch(digits, device=device)))
    assert set(losses) == {"loss_d", "r1", "loss_g"}  # global_step 0: an R1 step
    assert all(numpy.isfinite(v) for v in losses.values())
    assert all(_changed(d0, sg.discriminator))
    changed = dict(
        zip(
            [n for n, _ in sg.generator.named_parameters()], _changed(g0, sg.generator), strict=True
        )
    )
    # Every generator parameter moves, noise strengths included (zero init, non-zero grads).
    assert all(changed.values()), [n for n, c in changed.items() if not c]
    assert not numpy.array_equal(w_avg0, sg.generator.w_avg.numpy())
    assert str(sg.generator.w_avg.device) == str(engine.device(device))


def test_generator_step_leaves_the_frozen_discriminator_alone(digits):
    sg = _tiny()
    d0, g0 = _params(sg.discriminator), _params(sg.generator)
    sg.generator_step(sg.generator(sg.noise(8)))
    assert not any(_changed(d0, sg.discriminator))
    assert all(p.grad is None for p in sg.discriminator.parameters())
    assert all(p.requires_grad for p in sg.discriminator.parameters())
    assert any(_changed(g0, sg.generator))


def test_discriminator_step_leaves_the_generator_alone(digits):
    sg = _tiny()
    g0 = _params(sg.generator)
    real = _batch(digits)[0] * 2.0 - 1.0
    losses = floats(sg.discriminator_step(real, sg.generator(sg.noise(8))))
    assert not any(_changed(g0, sg.generator))
    assert all(p.grad is None for p in sg.generator.parameters())
    assert losses["loss_d"] > 0 and losses["r1"] >= 0


def test_r1_penalty_is_added_every_r1_every_steps(digits):
    """The R1 step's loss is the logistic loss plus r1_penalty(gamma * r1_every): the
    parameter gradients equal those of that sum computed directly (double backward)."""
    sg = _tiny(r1_gamma=2.0, r1_every=3)
    real = _batch(digits)[0] * 2.0 - 1.0
    fake = sg.generator(sg.noise(8)).detach()
    d = sg.discriminator
    import engine.functional as F

    logistic = F.softplus(d(fake)).mean() + F.softplus(-d(real)).mean()
    penalty = regularizers.r1_penalty(d, real, gamma=6.0)
    assert penalty.item() > 0
    want = engine.grad(logistic + penalty, list(d.parameters()))
    want = [g.numpy().copy() for g in want]

    original = sg.optimizers["discriminator"].step
    sg.optimizers["discriminator"].step = lambda: None  # keep the gradients, skip the update
    losses = floats(sg.discriminator_step(real, fake))
    assert losses["r1"] == pytest.approx(penalty.item() / 3, rel=1e-4)
    for p, g in zip(d.parameters(), want, strict=True):
        numpy.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-4, atol=1e-6)
    sg.global_step = 1  # not a multiple of r1_every: no penalty
    assert "r1" not in sg.discriminator_step(real, fake)
    sg.optimizers["discriminator"].step = original


def test_mixing_regularisation_switches_latents_at_one_layer():
    sg = _tiny(mixing_prob=1.0)
    with engine.no_grad():
        ws = sg._training_ws(4).numpy()
    switches = (numpy.abs(numpy.diff(ws, axis=1)) > 0).any(axis=(0, 2))
    assert switches.sum() == 1  # two latents, one crossover layer
    sg.mixing_prob = 0.0
    with engine.no_grad():
        ws = sg._training_ws(4).numpy()
    numpy.testing.assert_array_equal(ws, numpy.broadcast_to(ws[:, :1], ws.shape))


# ------------------------------------------------------------------------------------------
# Style mixing and truncation


def _trained_a_little(digits, steps=3):
    sg = _tiny()
    for layer in sg.generator.synthesis.layers:  # noise that matters, so "const" is tested
        layer.noise_strength.data.fill_(0.3)
    for _ in range(steps):
        sg.train_step(_batch(digits))
        sg.global_step += 1
    return sg


def test_mix_shapes_and_the_source_w_at_the_chosen_layers(digits):
    sg = _trained_a_little(digits)
    z_src, z_dst = sg.noise(3), sg.noise(2)
    out = sg.mix(z_src, z_dst, "coarse")
    assert out.shape == (6, 1, 8, 8)
    assert float(out.numpy().min()) >= 0.0 and float(out.numpy().max()) <= 1.0
    # Cell (i, j) is the destination j with source i's w at layers 0, 1, by hand:
    ws_src, ws_dst = sg.mapped(z_src).numpy(), sg.mapped(z_dst).numpy()
    ws = numpy.repeat(ws_dst[None], 3, axis=0)
    ws[:, :, :2] = ws_src[:, None, :2]
    want = sg.synthesize(engine.tensor(ws.reshape(6, 4, -1)), "const")
    numpy.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # All layers from the source: the source image (fixed noise); none: the destination.
    all_src = sg.mix(z_src, z_dst, "all").numpy().reshape(3, 2, 1, 8, 8)
    src = sg.generate(z_src, noise_mode="const").numpy()
    for j in range(2):
        numpy.testing.assert_allclose(all_src[:, j], src, rtol=1e-5, atol=1e-6)
    none = sg.mix(z_src, z_dst, []).numpy().reshape(3, 2, 1, 8, 8)
    dst = sg.generate(z_dst, noise_mode="const").numpy()
    numpy.testing.assert_allclose(none[1], dst, rtol=1e-5, atol=1e-6)
    fine = sg.mix(z_src, z_dst, "fine").numpy()
    assert not numpy.allclose(fine, out.numpy())


def test_mixing_grid_layout(digits):
    sg = _trained_a_little(digits, steps=1)
    z_src, z_dst = sg.noise(2), sg.noise(3)
    grid = sg.mixing_grid(z_src, z_dst, [1, 3]).numpy().reshape(3, 4, 1, 8, 8)
    assert numpy.all(grid[0, 0] == 0.0)  # blank corner
    numpy.testing.assert_allclose(
        grid[0, 1:], sg.generate(z_dst, noise_mode="const").numpy(), rtol=1e-5, atol=1e-6
    )
    numpy.testing.assert_allclose(
        grid[1:, 0], sg.generate(z_src, noise_mode="const").numpy(), rtol=1e-5, atol=1e-6
    )
    numpy.testing.assert_allclose(
        grid[1:, 1:].reshape(6, 1, 8, 8),
        sg.mix(z_src, z_dst, [1, 3]).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_layer_selection_errors():
    sg = _tiny()
    assert sg.layer_indices("middle") == [2] and sg.layer_indices([0, 3]) == [0, 3]
    with pytest.raises(ValueError, match="coarse"):
        sg.layer_indices("everything")
    with pytest.raises(ValueError, match=r"\[7\] out of range"):
        sg.layer_indices([0, 7])
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        sg.mix(engine.randn(2, 5), sg.noise(2))


def test_truncation_psi_zero_gives_the_mean_w_image(digits):
    sg = _trained_a_little(digits)
    w_avg = sg.generator.w_avg.numpy()
    assert numpy.abs(w_avg).sum() > 0  # tracked during training
    z = sg.noise(5)
    at_mean = sg.generate(z, truncation_psi=0.0, noise_mode="const").numpy()
    ws = numpy.broadcast_to(w_avg, (1, 4, w_avg.size))
    want = sg.synthesize(engine.tensor(numpy.ascontiguousarray(ws)), "const").numpy()
    for image in at_mean:
        numpy.testing.assert_allclose(image, want[0], rtol=1e-5, atol=1e-6)
    half = sg.mapped(z, truncation_psi=0.5).numpy()
    full = sg.mapped(z).numpy()
    numpy.testing.assert_allclose(half, 0.5 * (w_avg + full), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Checkpoints and a short real run


def test_checkpoint_round_trip(tmp_path, digits):
    sg = _trained_a_little(digits, steps=2)
    path = tmp_path / "sg.npz"
    sg.save_checkpoint(path)
    state = engine.load(path)
    assert state["task"] == "stylegan" and state["config"]["num_ws"] == 4
    back = StyleGAN.from_checkpoint(path, device="cpu")
    assert back.config() == sg.config() and back.global_step == sg.global_step
    numpy.testing.assert_array_equal(back.generator.w_avg.numpy(), sg.generator.w_avg.numpy())
    z = sg.noise(4)
    numpy.testing.assert_array_equal(
        back.generate(z, noise_mode="const").numpy(), sg.generate(z, noise_mode="const").numpy()
    )
    numpy.testing.assert_array_equal(back.preview().numpy(), sg.preview().numpy())
    # Training on from the checkpoint continues exactly like the original (from the same
    # point of the engine's random stream: the saved one).
    engine.random.set_rng_state(state["rng"])
    a = floats(sg.train_step(_batch(digits)))
    engine.random.set_rng_state(state["rng"])
    assert floats(back.train_step(_batch(digits))) == a
    for p, q in zip(sg.generator.parameters(), back.generator.parameters(), strict=True):
        numpy.testing.assert_array_equal(p.numpy(), q.numpy())
    with pytest.raises(ValueError, match="not a StyleGAN checkpoint"):
        engine.save({"task": "gan"}, tmp_path / "gan.npz")
        StyleGAN.from_checkpoint(tmp_path / "gan.npz")


def test_short_run_covers_most_digit_classes(digits, judge):
    """The default recipe for 2 epochs (the full 30-epoch target, >= 9 classes, is in
    reports/stylegan_report.py): already >= 8 classes with >= 2% of 500 samples."""
    sg = build_stylegan("digits", device="cpu", seed=0, progress=False)
    loader = DataLoader(digits[0], 64, shuffle=True, drop_last=True, seed=0)
    untrained = judge.classes_covered(sg.sample(500))
    history = sg.fit(loader, 2)
    assert all(numpy.isfinite(history["loss_d"])) and all(numpy.isfinite(history["loss_g"]))
    assert untrained <= 5 and judge.classes_covered(sg.sample(500)) >= 8


def test_trainer_outputs(tmp_path, digits, judge):
    """train() writes the sample grid, metrics (with the judge's numbers) and the checkpoint."""
    sg = _tiny(out_dir=tmp_path / "run", judge=judge, judge_samples=50)
    sg.fit(DataLoader(TensorDataset(digits[0].tensors[0][:32]), 16, seed=0), 1)
    assert (tmp_path / "run" / "samples.png").exists()
    history = sg.history
    assert history["classes_covered"][0] >= 1 and history["inception_score"][0] >= 1.0
    # Those are the judge's numbers for judge_samples samples of this model: epoch_metrics put
    # the random state back afterwards, so the same samples can be drawn again now.
    with rng_state_preserved():
        report = judge.report(sg.sample(50).cpu())
    assert history["classes_covered"] == [report["classes_covered"]]
    assert history["inception_score"] == [pytest.approx(report["inception_score"], rel=1e-12)]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["history"]["inception_score"] == history["inception_score"]
    assert engine.load(tmp_path / "run" / "checkpoint.npz")["task"] == "stylegan"
