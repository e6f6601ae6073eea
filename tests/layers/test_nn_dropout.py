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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * inf, nan sums: on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fused_cuda_dropout_is_one_mask_forward_and_backward(p, dtype):
    """On cuda, elementwise dropout is one kernel each way with its own counter-based numbers:
    y = x * mask with mask in {0, 1 / (1 - p)}, about 1 - p kept; the backward regenerates the
    same mask (first and second derivatives); a seed repeats it, the next call differs."""
    if not engine.cuda.is_available():
        pytest.skip("needs cuda (the CuPy stand-in in CI)")
    import engine.functional as F

    x0 = np.random.default_rng(3).uniform(0.5, 1.5, (40, 250)).astype(dtype)
    x0[0, :3] = [np.inf, -np.inf, np.nan]  # non-finite inputs: NaN where dropped, as x * 0
    engine.manual_seed(11)
    x = engine.tensor(x0, device="cuda", requires_grad=True)
    y = F.dropout(x, p)
    assert y.dtype == dtype
    yh = y.detach().cpu().numpy()
    scale = dtype(1 / (1 - p))
    mask = np.where(yh[1:] != 0, scale, dtype(0))  # x > 0 there: y != 0 exactly where kept
    np.testing.assert_array_equal(yh[1:], x0[1:] * mask)
    assert abs((mask != 0).mean() - (1 - p)) < 0.02
    assert np.all(np.isnan(yh[0, :3]) | np.isinf(yh[0, :3]))  # NaN dropped, +-inf kept
    gy = np.random.default_rng(4).standard_normal(x0.shape).astype(dtype)
    (gx,) = engine.grad(y, (x,), engine.tensor(gy, device="cuda"), create_graph=True)
    np.testing.assert_array_equal(gx.detach().cpu().numpy()[1:], gy[1:] * mask)
    assert not gx.requires_grad  # gy * mask: no dependence on x, nothing further to record
    x2 = engine.tensor(x0, device="cuda", requires_grad=True)
    engine.manual_seed(11)
    y2 = F.dropout(x2, p)
    (y2 * engine.tensor(gy, device="cuda")).sum().backward()
    np.testing.assert_array_equal(y2.detach().cpu().numpy(), y.detach().cpu().numpy())
    np.testing.assert_array_equal(x2.grad.cpu().numpy()[1:], gy[1:] * mask)
    y3 = F.dropout(x2, p).detach().cpu().numpy()
    assert not np.array_equal(y3[1:] != 0, mask != 0)  # the stream moved on
