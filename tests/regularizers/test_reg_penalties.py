"""L1 / L2 penalties: which tensors they cover, their values and gradients, and what they do
to an over-parameterised linear model."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import layers as nn
from regularizers import L1, L2, select_weights


def _model():
    engine.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _np(t):
    return t.detach().numpy().astype(np.float64)


def test_by_default_only_weights_are_penalised():
    model = _model()
    chosen = select_weights(model)
    assert [id(p) for p in chosen] == [id(model[0].weight), id(model[3].weight)]
    everything = select_weights(model.named_parameters(), include_all=True)
    assert len(everything) == 6
    # Plain parameters (no names): decided by ndim, so biases and norm scales are left out.
    assert len(select_weights(model.parameters())) == 2
    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    assert len(select_weights(list(tied.parameters()) * 2)) == 1  # shared tensors once


def test_l1_and_l2_values(device):
    model = _model().to(device)
    w0, w3 = _np(model[0].weight), _np(model[3].weight)
    l1 = L1(0.1)(model)
    l2 = L2(0.01)(model)
    assert l1.shape == () and l1.device == device
    assert l1.item() == pytest.approx(0.1 * (np.abs(w0).sum() + np.abs(w3).sum()), rel=1e-5)
    assert l2.item() == pytest.approx(0.01 * ((w0**2).sum() + (w3**2).sum()), rel=1e-5)
    all_params = sum((_np(p) ** 2).sum() for p in model.parameters())
    assert L2(0.5, include_all=True)(model).item() == pytest.approx(0.5 * all_params, rel=1e-5)
    assert L1(1.0)([]).item() == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        L1(-1.0)


def test_penalty_gradients(device):
    model = _model().to(device)
    (L1(0.3)(model) + L2(0.2)(model)).backward()
    for lin in (model[0], model[3]):
        w = _np(lin.weight)
        np.testing.assert_allclose(
            lin.weight.grad.numpy(), 0.3 * np.sign(w) + 0.4 * w, rtol=1e-5, atol=1e-7
        )
        assert lin.bias.grad is None
    assert model[1].weight.grad is None


def test_penalty_gradients_match_torch(torch):
    model = _model()
    tw = [torch.tensor(p.numpy(), requires_grad=True) for p in select_weights(model)]
    ref = 0.3 * sum(w.abs().sum() for w in tw) + 0.2 * sum((w**2).sum() for w in tw)
    ref.backward()
    ours = L1(0.3)(model) + L2(0.2)(model)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    for p, t in zip(select_weights(model), tw, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-5)


def _fit(penalty, steps=250, lr=0.1):
    """Plain gradient descent on an under-determined least-squares problem (40 x 80)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 80)).astype(np.float32)
    w_true = np.zeros(80, np.float32)
    w_true[:5] = [2.0, -2.0, 1.5, -1.0, 1.0]
    inputs, targets = engine.tensor(x), engine.tensor((x @ w_true)[:, None])
    engine.manual_seed(0)
    model = nn.Linear(80, 1, bias=False)
    for _ in range(steps):
        model.zero_grad()
        loss = ((model(inputs) - targets) ** 2).mean() + penalty(model)
        loss.backward()
        with engine.no_grad():
            model.weight.sub_(model.weight.grad * lr)
    return model.weight.numpy().ravel()


def test_l1_drives_irrelevant_weights_to_zero_where_l2_only_shrinks_them():
    w_l1, w_l2 = _fit(L1(0.1)), _fit(L2(0.1))
    # "Near zero": within the +-lr*lam band that subgradient steps oscillate in, and far
    # below the smallest true weight (1.0).
    near_zero_l1 = (np.abs(w_l1[5:]) < 3e-2).mean()
    near_zero_l2 = (np.abs(w_l2[5:]) < 3e-2).mean()
    assert near_zero_l1 > 0.9, near_zero_l1
    assert near_zero_l2 < 0.5, near_zero_l2
    assert np.all(np.abs(w_l1[:5]) > 0.5)  # the true features survive
    assert np.abs(w_l2).max() < 2.0  # L2 shrinks everything (the largest true weight is 2)
