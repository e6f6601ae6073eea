"""layers.init: formulas against PyTorch's, variance preservation through deep nets."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
import layers as nn
from layers import init


def _deep_mlp_second_moments(width, depth, weight_init, activation, n=512):
    """E[h^2] of each layer's pre-activation for N(0, 1) inputs (bias zero)."""
    engine.manual_seed(0)
    net = [nn.Linear(width, width) for _ in range(depth)]
    for lin in net:
        weight_init(lin.weight)
        init.zeros_(lin.bias)
    h = engine.randn(n, width)
    moments = []
    with engine.no_grad():
        for lin in net:
            z = lin(h)
            moments.append(float((z * z).mean().item()))
            h = activation(z)
    return np.array(moments)


@pytest.mark.parametrize("scheme", [init.kaiming_normal_, init.kaiming_uniform_])
def test_kaiming_keeps_relu_activation_variance_through_20_layers(scheme):
    m = _deep_mlp_second_moments(256, 20, scheme, lambda z: z.relu())
    ratios = m[1:] / m[:-1]
    assert np.all((ratios > 0.5) & (ratios < 2.0)), ratios
    assert 0.5 < m[-1] / m[0] < 2.0, m  # no drift over the whole depth either
    # PyTorch's Linear default (a=sqrt(5)) is not variance-preserving: it shrinks ~6x a layer.
    shrinking = _deep_mlp_second_moments(256, 5, lambda w: None, lambda z: z.relu())
    assert shrinking[-1] / shrinking[0] < 1e-2


def test_xavier_with_tanh_gain_keeps_tanh_activations_alive():
    gain = init.calculate_gain("tanh")
    m = _deep_mlp_second_moments(
        256, 20, lambda w: init.xavier_uniform_(w, gain=gain), lambda z: z.tanh()
    )
    ratios = m[1:] / m[:-1]
    assert np.all((ratios > 0.5) & (ratios < 2.0)), ratios
    assert m[-1] > 0.3, m  # neither vanishing nor saturating
    vanishing = _deep_mlp_second_moments(
        256, 20, lambda w: init.xavier_uniform_(w, gain=0.5), lambda z: z.tanh()
    )
    assert vanishing[-1] < 1e-3  # the test can tell a bad gain apart


def test_calculate_gain_and_fans_match_torch(torch):
    for name in ["linear", "conv2d", "sigmoid", "tanh", "relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2)
    )
    for shape in [(5, 3), (8, 4, 3, 3), (2, 6, 5)]:
        ours = init._calculate_fan_in_and_fan_out(engine.zeros(*shape))
        theirs = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        assert ours == theirs
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(engine.zeros(3))


@pytest.mark.parametrize(
    "fn, kwargs, kind, expected",
    [
        (init.kaiming_uniform_, {}, "bound", math.sqrt(2) * math.sqrt(3 / 288)),
        (
            init.kaiming_uniform_,
            {"mode": "fan_out", "nonlinearity": "relu"},
            "bound",
            math.sqrt(2) * math.sqrt(3 / 576),
        ),
        (init.kaiming_normal_, {"a": 0.2}, "std", math.sqrt(2 / 1.04) / math.sqrt(288)),
        (init.xavier_uniform_, {"gain": 2.0}, "bound", 2 * math.sqrt(6 / (288 + 576))),
        (init.xavier_normal_, {}, "std", math.sqrt(2 / (288 + 576))),
        (init.normal_, {"mean": 0.0, "std": 0.02}, "std", 0.02),
        (init.uniform_, {"a": -0.3, "b": 0.3}, "bound", 0.3),
    ],
)
def test_init_distributions_have_the_formula_spread(fn, kwargs, kind, expected, device):
    w = engine.empty(64, 32, 3, 3, device=device)  # fan_in 288, fan_out 576
    assert fn(w, **kwargs) is w
    a = w.numpy()
    if kind == "bound":
        assert np.abs(a).max() <= expected and np.abs(a).max() > 0.99 * expected
        assert a.std() == pytest.approx(expected / math.sqrt(3), rel=0.02)
    else:
        assert a.std() == pytest.approx(expected, rel=0.02)
    assert abs(a.mean()) < 5 * a.std() / math.sqrt(a.size)  # zero mean, to five standard errors


def test_init_runs_on_parameters_without_recording_a_graph(device):
    lin = nn.Linear(4, 3).to(device)
    init.xavier_normal_(lin.weight)
    init.constant_(lin.bias, 0.25)
    assert lin.weight.is_leaf and lin.weight.requires_grad and lin.weight.grad_fn is None
    np.testing.assert_array_equal(lin.bias.numpy(), [0.25] * 3)
    init.ones_(lin.bias)
    init.zeros_(lin.weight)
    assert not lin.weight.numpy().any() and lin.bias.numpy().all()
    init.eye_(lin.weight)
    np.testing.assert_array_equal(lin.weight.numpy(), np.eye(3, 4))


def test_orthogonal_and_truncated_normal(device):
    engine.manual_seed(1)
    w = init.orthogonal_(engine.empty(6, 10, device=device), gain=2.0).numpy()
    np.testing.assert_allclose(w @ w.T, 4.0 * np.eye(6), atol=1e-5)
    tall = init.orthogonal_(engine.empty(10, 2, 3, device=device)).numpy().reshape(10, 6)
    np.testing.assert_allclose(tall.T @ tall, np.eye(6), atol=1e-5)
    t = init.trunc_normal_(engine.empty(20000, device=device), std=1.0, a=-1.0, b=1.5).numpy()
    assert t.min() >= -1.0 and t.max() <= 1.5 and t.min() < -0.99 and t.max() > 1.49
    assert t.mean() > 0.05  # the asymmetric cut shifts the mean up (~0.13)


def test_apply_for_custom_init_is_seeded_and_reproducible():
    def weights_init(m):  # the DCGAN recipe
        if isinstance(m, nn.Conv2d):
            init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, 0.02)
            init.zeros_(m.bias)

    def build():
        engine.manual_seed(7)
        return nn.Sequential(nn.Conv2d(3, 64, 4), nn.BatchNorm2d(64)).apply(weights_init)

    a, b = build(), build()
    np.testing.assert_array_equal(a[0].weight.numpy(), b[0].weight.numpy())
    assert a[0].weight.numpy().std() == pytest.approx(0.02, rel=0.05)
    assert a[1].weight.numpy().mean() == pytest.approx(1.0, abs=0.01)
