"""Learning-rate schedulers: the same lr sequences as torch.optim.lr_scheduler, state dicts,
closed forms, and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
import optimizers as optim
from optimizers import lr_scheduler as sched

EPOCHS = 25

# (name, kwargs): ours and torch's take the same arguments.
CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 11], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=6)),  # 25 epochs cross the T_max restarts branch
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.01)),
    ("LinearLR", dict(start_factor=0.1, total_iters=4)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=10)),
]


def _ours_opt():
    ps = [engine.zeros(2, requires_grad=True), engine.zeros(3, requires_grad=True)]
    return optim.SGD([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "lr": 0.03}])


def _torch_opt(torch):
    ps = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    return torch.optim.SGD([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "lr": 0.03}])


def sequence(opt, scheduler, epochs=EPOCHS) -> list[list[float]]:
    lrs = [scheduler.get_last_lr()]
    assert lrs[0] == [g["lr"] for g in opt.param_groups]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch(torch, name, kw):
    ours = _ours_opt()
    theirs = _torch_opt(torch)
    got = sequence(ours, getattr(sched, name)(ours, **kw))
    want = sequence(theirs, getattr(torch.optim.lr_scheduler, name)(theirs, **kw))
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-15, atol=0)
    assert len({tuple(lr) for lr in got}) > 2  # the schedule changed the rates


def test_lambda_lr_matches_torch(torch):
    fns = [lambda e: 0.95**e, lambda e: min(1.0, (e + 1) / 5)]  # decay; linear warm-up
    ours, theirs = _ours_opt(), _torch_opt(torch)
    got = sequence(ours, sched.LambdaLR(ours, fns))
    want = sequence(theirs, torch.optim.lr_scheduler.LambdaLR(theirs, fns))
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-15)


def test_textbook_values_without_torch():
    """Closed forms, checked without the oracle."""
    opt = _ours_opt()
    cos = sched.CosineAnnealingLR(opt, T_max=8, eta_min=0.001)
    got = sequence(opt, cos, epochs=8)
    want = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(9)]
    np.testing.assert_allclose([lr[0] for lr in got], want, rtol=1e-12)

    opt = _ours_opt()
    warm = sched.LinearLR(opt, start_factor=0.25, total_iters=3)
    got = [lr[1] for lr in sequence(opt, warm, epochs=5)]
    np.testing.assert_allclose(got, [0.03 * f for f in (0.25, 0.5, 0.75, 1, 1, 1)], rtol=1e-12)

    opt = _ours_opt()
    got = [lr[0] for lr in sequence(opt, sched.StepLR(opt, step_size=2, gamma=0.1), epochs=5)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-12)


@pytest.mark.parametrize("name, kw", CASES[:5], ids=[n for n, _ in CASES[:5]])
def test_step_with_epoch_uses_the_closed_form(name, kw):
    opt = _ours_opt()
    s = getattr(sched, name)(opt, **kw)
    recursive = sequence(opt, s, epochs=9)
    opt2 = _ours_opt()
    s2 = getattr(sched, name)(opt2, **kw)
    s2.step(9)
    np.testing.assert_allclose(s2.get_last_lr(), recursive[9], rtol=1e-12)


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_state_dict_round_trip(tmp_path, name, kw):
    """Checkpoint the optimizer and the scheduler mid-schedule; the resumed run continues alike."""
    opt = _ours_opt()
    s = getattr(sched, name)(opt, **kw)
    sequence(opt, s, epochs=7)
    engine.save({"opt": opt.state_dict(), "sched": s.state_dict()}, tmp_path / "ckpt.npz")
    rest = sequence(opt, s, epochs=8)[1:]

    ckpt = engine.load(tmp_path / "ckpt.npz")
    opt2 = _ours_opt()
    s2 = getattr(sched, name)(opt2, **kw)
    opt2.load_state_dict(ckpt["opt"])
    s2.load_state_dict(ckpt["sched"])
    assert s2.last_epoch == 7
    assert sequence(opt2, s2, epochs=8)[1:] == rest


def test_construction_sets_initial_lr_and_resumes_with_last_epoch():
    opt = _ours_opt()
    sched.ExponentialLR(opt, gamma=0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.03]
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(_ours_opt(), step_size=2, last_epoch=3)
    s = sched.StepLR(opt, step_size=2, gamma=0.1, last_epoch=3)  # resumes: initial_lr is set
    assert s.last_epoch == 4


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda o: sched.StepLR(o, step_size=0), "step_size"),
        (lambda o: sched.StepLR(o, step_size=2, gamma=-0.1), "gamma"),
        (lambda o: sched.ExponentialLR(o, gamma=-1.0), "gamma"),
        (lambda o: sched.CosineAnnealingLR(o, T_max=0), "T_max"),
        (lambda o: sched.LinearLR(o, start_factor=0.0), "start_factor"),
        (lambda o: sched.LinearLR(o, end_factor=1.5), "end_factor"),
        (lambda o: sched.LinearLR(o, total_iters=0), "total_iters"),
        (lambda o: sched.LambdaLR(o, [lambda e: 1.0]), "Expected 2 lr_lambdas"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(_ours_opt())


def test_needs_an_optimizer():
    with pytest.raises(TypeError, match="not an Optimizer"):
        sched.StepLR(object(), step_size=1)
