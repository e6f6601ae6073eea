"""On cuda, SGD and Adam update a whole param group in one launch (issue 12, PyTorch's
multi-tensor apply), with the same values as the cpu's per-parameter updates."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import optimizers


@pytest.fixture
def counting():
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in")
    from cuda_sim import counters

    return counters


def _params(device, dtype="float32"):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (0,), (2, 3, 5), (1,)]
    ps = [engine.tensor(rng.standard_normal(s), dtype=dtype, device=device, requires_grad=True)
          for s in shapes]  # fmt: skip
    for p in ps:
        p.grad = engine.tensor(rng.standard_normal(p.shape), dtype=dtype, device=device)
    return ps


MAKERS = {
    "adam": lambda ps: optimizers.Adam(ps, lr=0.1, weight_decay=0.01, amsgrad=True),
    "adamw": lambda ps: optimizers.AdamW(ps, lr=0.1),
    "sgd": lambda ps: optimizers.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "sgd-plain": lambda ps: optimizers.SGD(ps, lr=0.1),
}


@pytest.mark.parametrize("name", MAKERS)
def test_one_launch_per_group_and_the_cpus_values(counting, name):
    results = {}
    for device in ("cpu", "cuda"):
        ps = _params(device, "float64")
        opt = MAKERS[name](ps)
        for step in range(3):
            with counting.count() as c:
                opt.step()
            if device == "cuda" and step:
                assert c.launch_kinds["RawKernel"] == 1, dict(c.launch_kinds)
        results[device] = [p.numpy() for p in ps]
    for a, b in zip(results["cpu"], results["cuda"], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-15)


def test_a_subclass_that_changes_update_keeps_per_parameter_updates(counting):
    seen = []

    class Traced(optimizers.Adam):
        def _update(self, p, grad, state, group):
            seen.append(p.shape)
            super()._update(p, grad, state, group)

    ps = _params("cuda")
    Traced(ps, lr=0.1).step()
    assert seen == [p.shape for p in ps]
