"""The two momentum conventions across a learning-rate change (issue 19's numbers).

`Momentum` / `Nesterov` keep the velocity in parameter units (v = mu v - lr g); `SGD(momentum=)`
keeps torch.optim.SGD's buffer in gradient units (b = mu b + g; p -= lr b). Each is checked
against its own reference with w = 1, g = 1, mu = 0.9, lr 0.1 then 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import optimizers as optim
from optimizers.lr_scheduler import CosineAnnealingLR

LRS = (0.1, 0.05)
MU = 0.9


def textbook(lrs, nesterov: bool, w=1.0, g=1.0) -> list[float]:
    """v = mu v - lr g; w += v, or (Bengio's look-ahead form) w += mu v - lr g."""
    v, out = 0.0, []
    for lr in lrs:
        v = MU * v - lr * g
        w += MU * v - lr * g if nesterov else v
        out.append(w)
    return out


def pytorch_form(lrs, nesterov: bool, w=1.0, g=1.0) -> list[float]:
    """torch.optim.SGD: b = g on the first step, then b = mu b + g; w -= lr (g + mu b) or lr b."""
    b, out = None, []
    for lr in lrs:
        b = g if b is None else MU * b + g
        w -= lr * (g + MU * b if nesterov else b)
        out.append(w)
    return out


def run(opt_factory, lrs, device) -> list[float]:
    w = engine.tensor([1.0], dtype=np.float64, device=device, requires_grad=True)
    opt = opt_factory([w], lr=lrs[0])
    out = []
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = engine.ones(1, dtype=np.float64, device=device)
        opt.step()
        out.append(float(w.numpy()[0]))
    return out


FORMS = {
    "Momentum": (lambda p, lr: optim.Momentum(p, lr=lr, mu=MU), textbook, False, (0.9, 0.76)),
    "Nesterov": (lambda p, lr: optim.Nesterov(p, lr=lr, mu=MU), textbook, True, (0.81, 0.634)),
    "SGD-momentum": (
        lambda p, lr: optim.SGD(p, lr=lr, momentum=MU), pytorch_form, False, (0.9, 0.805),
    ),
    "SGD-nesterov": (
        lambda p, lr: optim.SGD(p, lr=lr, momentum=MU, nesterov=True), pytorch_form, True,
        (0.81, 0.6745),
    ),
}  # fmt: skip


@pytest.mark.parametrize("form", list(FORMS))
def test_each_form_follows_its_reference_across_an_lr_change(device, form):
    factory, reference, nesterov, numbers = FORMS[form]
    got = run(factory, LRS, device)
    np.testing.assert_allclose(got, reference(LRS, nesterov), rtol=1e-14)
    np.testing.assert_allclose(got, numbers, rtol=1e-12)  # the numbers


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_forms_agree_at_constant_lr_and_part_at_a_change(device, nesterov):
    textbook_cls = optim.Nesterov if nesterov else optim.Momentum

    def torch_like(p, lr):
        return optim.SGD(p, lr=lr, momentum=MU, nesterov=nesterov)

    def ours(p, lr):
        return textbook_cls(p, lr=lr, mu=MU)

    constant = (0.1,) * 5
    np.testing.assert_allclose(
        run(ours, constant, device), run(torch_like, constant, device), rtol=1e-14
    )
    changed = (0.1, 0.1, 0.05, 0.05)
    assert abs(run(ours, changed, device)[-1] - run(torch_like, changed, device)[-1]) > 0.01


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch_under_a_cosine_schedule(device, torch, nesterov):
    """What `train classifier --optimizer momentum|nesterov` runs: torch's numbers, step for step,
    through CosineAnnealingLR stepped once per 'epoch' of three steps."""
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal(6), rng.standard_normal((12, 6))
    w = engine.tensor(w0, device=device, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=MU, nesterov=nesterov)
    topt = torch.optim.SGD([tw], lr=0.1, momentum=MU, nesterov=nesterov)
    sched, tsched = (
        CosineAnnealingLR(opt, T_max=4),
        torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=4),
    )
    for i, g in enumerate(grads):
        w.grad, tw.grad = engine.tensor(g, device=device), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        if i % 3 == 2:
            sched.step()
            tsched.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-13, atol=1e-14)


def test_the_classifier_cli_uses_the_pytorch_form():
    from tensortape.tasks.classifier import make_optimizer

    for name, nesterov in (("momentum", False), ("nesterov", True)):
        w = engine.tensor([1.0], requires_grad=True)
        opt = make_optimizer(name, [w], 0.1)
        assert type(opt) is optim.SGD
        group = opt.param_groups[0]
        assert (group["momentum"], group["nesterov"]) == (MU, nesterov)
