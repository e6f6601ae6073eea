"""The same small net trained N steps here and with torch.optim from identical weights ends with
the same weights, for every optimizer and its variants (tinygrad's optimizer test).

The net is two linear layers with a tanh, written with engine ops; the data and the initial
weights are fixed arrays. float64 agrees to 1e-12; float32 to a few float32 roundings.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import optimizers as optim

STEPS = 12
RNG = np.random.default_rng(7)
X = RNG.standard_normal((16, 5))
Y = RNG.standard_normal((16, 3))
INIT = [
    RNG.standard_normal((8, 5)) * 0.5,  # W1 (out, in), as torch.nn.Linear stores it
    RNG.standard_normal(8) * 0.1,
    RNG.standard_normal((3, 8)) * 0.5,
    RNG.standard_normal(3) * 0.1,
]

# (our class, kwargs, torch class name, torch kwargs)
CASES = {
    "sgd": (optim.SGD, dict(lr=0.1), "SGD", None),
    "sgd-momentum-dampening": (optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2), "SGD", None),
    "sgd-nesterov-wd": (
        optim.SGD,
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        "SGD",
        None,
    ),
    "sgd-maximize": (optim.SGD, dict(lr=0.01, maximize=True), "SGD", None),
    "momentum": (optim.Momentum, dict(lr=0.05, mu=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    "momentum-wd": (
        optim.Momentum,
        dict(lr=0.05, mu=0.8, weight_decay=0.1),
        "SGD",
        dict(lr=0.05, momentum=0.8, weight_decay=0.1),
    ),
    "nesterov": (
        optim.Nesterov,
        dict(lr=0.05, mu=0.9),
        "SGD",
        dict(lr=0.05, momentum=0.9, nesterov=True),
    ),
    "adam": (optim.Adam, dict(lr=0.01), "Adam", None),
    "adam-wd-amsgrad": (
        optim.Adam,
        dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True),
        "Adam",
        None,
    ),
    "adam-maximize": (optim.Adam, dict(lr=0.01, maximize=True), "Adam", None),
    "adamw": (optim.AdamW, dict(lr=0.01), "AdamW", None),
    "adamw-amsgrad": (optim.AdamW, dict(lr=0.01, weight_decay=0.3, amsgrad=True), "AdamW", None),
    "rmsprop": (optim.RMSprop, dict(lr=0.01), "RMSprop", None),
    "rmsprop-centered": (optim.RMSprop, dict(lr=0.01, centered=True), "RMSprop", None),
    "rmsprop-momentum-wd": (
        optim.RMSprop,
        dict(lr=0.005, momentum=0.9, weight_decay=0.1),
        "RMSprop",
        None,
    ),
    "rmsprop-centered-momentum": (
        optim.RMSprop,
        dict(lr=0.005, alpha=0.9, momentum=0.5, centered=True),
        "RMSprop",
        None,
    ),
    "adagrad": (optim.Adagrad, dict(lr=0.1), "Adagrad", None),
    "adagrad-decay-wd-init": (
        optim.Adagrad,
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1),
        "Adagrad",
        None,
    ),
    "adadelta": (optim.Adadelta, dict(), "Adadelta", None),
    "adadelta-rho-wd": (optim.Adadelta, dict(lr=0.5, rho=0.95, weight_decay=0.1), "Adadelta", None),
}


def forward(x, w1, b1, w2, b2):
    return (x @ w1.T + b1).tanh() @ w2.T + b2


def grouped(params, lr):
    """Two groups: the second layer at half the learning rate."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": lr / 2}]


def train_ours(cls, kw, device, dtype, groups=False) -> list[np.ndarray]:
    params = [engine.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in INIT]
    x = engine.tensor(X, dtype=dtype, device=device)
    y = engine.tensor(Y, dtype=dtype, device=device)
    spec = grouped(params, kw["lr"]) if groups else params
    opt = cls(spec, **kw)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = ((forward(x, *params) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.numpy() for p in params]


def train_torch(torch, name, kw, dtype, groups=False) -> list[np.ndarray]:
    tdtype = getattr(torch, np.dtype(dtype).name)
    params = [torch.tensor(a, dtype=tdtype, requires_grad=True) for a in INIT]
    x, y = torch.tensor(X, dtype=tdtype), torch.tensor(Y, dtype=tdtype)
    spec = grouped(params, kw["lr"]) if groups else params
    opt = getattr(torch.optim, name)(spec, foreach=False, **kw)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = ((forward(x, *params) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.detach().numpy() for p in params]


def assert_weights(ours, theirs, dtype) -> None:
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-5, atol=5e-6)
    for i, (o, t, w0) in enumerate(zip(ours, theirs, INIT, strict=True)):
        np.testing.assert_allclose(o, t, err_msg=f"parameter {i}", **tol)
        assert np.abs(t - w0).max() > 1e-3, "training did not move the weights"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matches_torch(device, torch, case, dtype):
    cls, kw, torch_name, torch_kw = CASES[case]
    ours = train_ours(cls, kw, device, dtype)
    theirs = train_torch(torch, torch_name, torch_kw or kw, dtype)
    assert_weights(ours, theirs, dtype)


@pytest.mark.parametrize("case", ["sgd-nesterov-wd", "adamw", "rmsprop-centered", "adagrad"])
def test_param_groups_match_torch(device, torch, case):
    """Per-group learning rates: the second layer trains at half the rate."""
    cls, kw, torch_name, torch_kw = CASES[case]
    ours = train_ours(cls, kw, device, np.float64, groups=True)
    theirs = train_torch(torch, torch_name, torch_kw or kw, np.float64, groups=True)
    assert_weights(ours, theirs, np.float64)
    ungrouped = train_ours(cls, kw, device, np.float64)
    assert np.abs(ours[2] - ungrouped[2]).max() > 1e-4
