"""Optimizer API: state dicts (save/load round trips continue bit-identically), param groups,
zero_grad, closures, and ValueError/TypeError for bad hyper-parameters and inputs."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import optimizers as optim

RNG = np.random.default_rng(3)
INIT = [RNG.standard_normal((4, 3)), RNG.standard_normal(3), RNG.standard_normal((2, 4))]
TARGETS = [RNG.standard_normal(a.shape) for a in INIT]

ALL = [
    (optim.SGD, dict(lr=0.05)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Momentum, dict(lr=0.05)),
    (optim.Nesterov, dict(lr=0.05)),
    (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    (optim.Adadelta, dict()),
]
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(ALL)]


def make_params(device, dtype=np.float32):
    return [engine.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in INIT]


def train(opt, params, steps: int, seed: int = 0) -> None:
    """A few steps on sum_i |w_i * noise - target_i|^2 with step-dependent noise."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0
        for p, target in zip(params, TARGETS, strict=True):
            noise = engine.tensor(rng.uniform(0.5, 1.5, p.shape), dtype=p.dtype, device=p.device)
            t = engine.tensor(target, dtype=p.dtype, device=p.device)
            loss = loss + ((p * noise - t) ** 2).sum()
        loss.backward()
        opt.step()


def groups_of(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]


def _plain(obj, where="state_dict") -> None:
    """Only dicts/lists/tuples/numbers/strings/None and host numpy arrays."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            _plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _plain(v, f"{where}[{i}]")
    else:
        assert obj is None or isinstance(obj, (str, int, float, bool, np.ndarray)), (
            f"{where}: {type(obj).__name__}"
        )


@pytest.mark.parametrize("cls, kw", ALL, ids=IDS)
def test_state_dict_round_trip_through_engine_save(device, tmp_path, cls, kw):
    """Train 3 steps, checkpoint, train 4 more; a restored copy does exactly the same."""
    params = make_params(device)
    opt = cls(groups_of(params), **kw)
    train(opt, params, 3)
    state = opt.state_dict()
    _plain(state)
    assert sorted(state["state"]) == [0, 1, 2]
    assert [g["params"] for g in state["param_groups"]] == [[0, 1], [2]]
    path = tmp_path / "opt.npz"
    engine.save({"optimizer": state, "params": [p.detach() for p in params]}, path)

    train(opt, params, 4, seed=1)
    expected = [p.numpy().copy() for p in params]

    ckpt = engine.load(path, map_location=device)
    restored = [engine.tensor(p, requires_grad=True) for p in ckpt["params"]]
    opt2 = cls(groups_of(restored), **kw)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.param_groups[1]["lr"] == 0.02
    train(opt2, restored, 4, seed=1)
    for r, e in zip(restored, expected, strict=True):
        assert r.device == device and r.dtype == np.float32
        np.testing.assert_array_equal(r.numpy(), e)


def test_state_dict_is_a_snapshot(device):
    params = make_params(device)
    opt = optim.Adam(params, lr=0.1)
    train(opt, params, 2)
    state = opt.state_dict()
    saved = state["state"][0]["exp_avg"].copy()
    assert state["state"][0]["step"] == 2
    train(opt, params, 2)
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], saved)
    assert not np.array_equal(opt.state_dict()["state"][0]["exp_avg"], saved)


def test_load_state_dict_checks_structure():
    params = make_params("cpu")
    opt = optim.Adam(params, lr=0.1)
    train(opt, params, 1)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam(groups_of(make_params("cpu"))).load_state_dict(state)
    with pytest.raises(ValueError, match="has 3 parameters.*has 2"):
        optim.Adam(make_params("cpu")[:2]).load_state_dict(state)
    other = make_params("cpu")
    other[0] = engine.zeros((5, 3), requires_grad=True)
    with pytest.raises(ValueError, match="shape"):
        optim.Adam(other).load_state_dict(state)


def test_load_state_dict_casts_floating_state_to_the_parameter_dtype():
    params = make_params("cpu", np.float64)
    opt = optim.Adam(params)
    train(opt, params, 1)
    state = opt.state_dict()
    params32 = make_params("cpu", np.float32)
    opt32 = optim.Adam(params32)
    opt32.load_state_dict(state)
    assert opt32.state[params32[0]]["exp_avg"].dtype == np.float32
    assert opt32.state[params32[0]]["step"] == 1
    train(opt32, params32, 1)


def test_zero_grad(device):
    params = make_params(device)
    opt = optim.SGD(params, lr=0.1)
    train(opt, params, 1)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    # A broadcast (read-only) gradient, as autograd leaves it for sum(), is zeroed too.
    w = engine.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    w.sum().backward()
    optim.SGD([w], lr=0.1).zero_grad(set_to_none=False)
    assert w.grad.shape == (2, 3) and not w.grad.numpy().any()


def test_step_skips_parameters_without_grad_and_calls_closure():
    a, b = make_params("cpu")[:2]
    before = b.numpy().copy()
    opt = optim.SGD([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(float((INIT[0] ** 2).sum()), rel=1e-6)
    np.testing.assert_allclose(a.numpy(), INIT[0] * 0.8, rtol=1e-6)
    np.testing.assert_array_equal(b.numpy(), before)
    assert b not in opt.state or not opt.state[b]


def test_add_param_group_and_defaults():
    params = make_params("cpu")
    opt = optim.Adam(params[:1], lr=0.1)
    opt.add_param_group({"params": params[1], "betas": (0.5, 0.6)})
    assert len(opt.param_groups) == 2
    g = opt.param_groups[1]
    assert g["lr"] == 0.1 and g["betas"] == (0.5, 0.6) and g["params"] == [params[1]]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [params[0]]})
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        opt.add_param_group({"params": [params[2]], "betas": (0.9, 1.0)})
    with pytest.warns(UserWarning, match="duplicate"):
        dup = optim.SGD([params[0], params[0]], lr=0.1)
    assert dup.param_groups[0]["params"] == [params[0]]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "learning rate"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "momentum"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda p: optim.SGD(p, lr=float("nan")), "learning rate"),
        (lambda p: optim.SGD(p, lr="fast"), "learning rate"),
        (lambda p: optim.Momentum(p, lr=0.1, mu=1.0), "mu"),
        (lambda p: optim.Nesterov(p, lr=-1.0), "learning rate"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "beta parameter at index 0"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "beta parameter at index 1"),
        (lambda p: optim.Adam(p, betas=(0.9,)), "betas"),
        (lambda p: optim.Adam(p, eps=-1e-8), "epsilon"),
        (lambda p: optim.AdamW(p, weight_decay=-0.01), "weight_decay"),
        (lambda p: optim.RMSprop(p, alpha=-0.1), "alpha"),
        (lambda p: optim.RMSprop(p, momentum=-0.1), "momentum"),
        (lambda p: optim.Adagrad(p, lr_decay=-1.0), "lr_decay"),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-1.0), "initial_accumulator"),
        (lambda p: optim.Adadelta(p, rho=1.5), "rho"),
        (lambda p: optim.Adadelta(p, eps=-1.0), "epsilon"),
        (lambda p: optim.Adam([{"params": p, "lr": -1.0}]), "learning rate"),
        (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
        (lambda p: optim.Momentum([{"params": p}], mu=0.9), "required optimization parameter lr"),
    ],
)
def test_invalid_hyper_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params("cpu"))


def test_invalid_parameters_raise():
    with pytest.raises(TypeError, match="Tensor"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(engine.zeros(3, requires_grad=True), lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        optim.SGD([engine.zeros(3, dtype="int64")], lr=0.1)
    with pytest.raises(TypeError, match="ordered"):
        optim.SGD([{"params": {engine.zeros(3, requires_grad=True)}}], lr=0.1)
    w = engine.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([w * 2], lr=0.1)


def test_gradient_mismatch_is_named():
    w = engine.zeros((2, 3), requires_grad=True)
    opt = optim.Adam([w])
    w.grad = engine.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        opt.step()
    w.grad = engine.zeros((2, 3), dtype="float64")
    with pytest.raises(TypeError, match="float64.*float32"):
        opt.step()


def test_step_bumps_the_version_counter():
    w = engine.tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    (w * w).sum().backward()
    before = w._version[0]
    opt.step()
    assert w._version[0] == before + 1


def test_repr_lists_groups():
    opt = optim.SGD(make_params("cpu"), lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "momentum: 0.9" in text
