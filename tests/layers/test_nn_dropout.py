"""Dropout and Dropout2d: expected activation preserved, eval is the identity, gradients."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import layers as nn
import regularizers


def test_regularizers_reexports_the_dropout_layers():
    assert nn.Dropout is regularizers.Dropout and nn.Dropout2d is regularizers.Dropout2d


def test_layers_do_not_import_regularizers():
    """One direction between the two packages: regularizers -> layers, never back."""
    import ast
    from pathlib import Path

    for path in Path(nn.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "regularizers" for n in names), path.name


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expected_activation(p, device):
    engine.manual_seed(0)
    drop = nn.Dropout(p)
    x = engine.full((200, 500), 3.0, device=device)
    out = drop(x).numpy()
    kept = out != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.01)  # about a fraction p is dropped
    np.testing.assert_allclose(out[kept], 3.0 / (1 - p), rtol=1e-6)  # the rest scaled up
    assert out.mean() == pytest.approx(3.0, rel=0.02)  # so the mean is unchanged


def test_dropout_gradient_is_the_same_mask(device):
    engine.manual_seed(1)
    x = engine.ones(50, 40, device=device, requires_grad=True)
    out = nn.Dropout(0.25)(x)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out.detach().numpy())


def test_dropout_is_the_identity_in_eval_mode_and_at_p0(device):
    x = engine.randn(4, 5, device=device)
    model = nn.Sequential(nn.Dropout(0.9), nn.Dropout2d(0.9)).eval()
    assert model(x.reshape(4, 5, 1, 1)).shape == (4, 5, 1, 1)
    np.testing.assert_array_equal(model(x.reshape(4, 5, 1, 1)).numpy().reshape(4, 5), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    assert not nn.Dropout(1.0)(x).numpy().any()
    model.train()
    engine.manual_seed(0)
    assert (model(engine.ones(64, 8, 1, 1, device=device)).numpy() == 0).mean() > 0.9


def test_dropout2d_zeroes_whole_channels(device):
    engine.manual_seed(2)
    x = engine.ones(64, 32, 3, 3, device=device)
    out = nn.Dropout2d(0.4)(x).numpy()
    per_channel = out.reshape(64, 32, 9)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))  # constant on each plane
    assert (per_channel[..., 0] == 0).mean() == pytest.approx(0.4, abs=0.03)
    assert out.mean() == pytest.approx(1.0, rel=0.05)


def test_dropout_draws_follow_the_engine_seed():
    x = engine.ones(10, 10)
    engine.manual_seed(3)
    a = nn.Dropout(0.5)(x).numpy()
    engine.manual_seed(3)
    b = nn.Dropout(0.5)(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, nn.Dropout(0.5)(x).numpy())


def test_invalid_probability_raises():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout2d(-0.1)
    assert repr(nn.Dropout(0.3)) == "Dropout(p=0.3, inplace=False)"
