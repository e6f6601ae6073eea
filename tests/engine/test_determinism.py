"""`engine.use_deterministic_algorithms(True)` (issue 12): on cuda the scatter-adds behind the
index backward, embedding, reflect/replicate/circular padding, nearest interpolation,
scatter_add and scatter_reduce run sorted and summed in order (kernels/cuda/scatter.cu) instead
of CuPy's atomics: two backward passes give the same bits. The stand-in runs atomics in order,
so these tests check the routing and the values; only a GPU shows atomics' reordering."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine.device import cupy

CASES = {
    "advanced index": lambda x: x[engine.tensor([0, 2, 0, 0, 3], device=x.device)],
    "embedding": lambda x: F.embedding(engine.tensor([[1, 1], [4, 1]], device=x.device), x),
    "reflect pad": lambda x: F.pad(x[None], (3, 3), mode="reflect"),
    "replicate pad": lambda x: F.pad(x[None], (2, 2), mode="replicate"),
    "circular pad": lambda x: F.pad(x[None], (2, 2), mode="circular"),
    "nearest interpolate": lambda x: F.interpolate(x[None], scale_factor=2.5, mode="nearest"),
    "scatter_add": lambda x: engine.scatter_add(
        x, 0, engine.tensor([[0] * 6, [4] * 6, [0] * 6], device=x.device), x[:3] * 2
    ),
    "scatter_reduce mean": lambda x: engine.scatter_reduce(
        x, 0, engine.tensor([[1] * 6, [1] * 6], device=x.device), x[:2], "mean"
    ),
}


@pytest.fixture
def deterministic():
    engine.use_deterministic_algorithms(True)
    yield
    engine.use_deterministic_algorithms(False)


def _grad(case, device, seed=0):
    x = np.random.default_rng(seed).standard_normal((5, 6)).astype(np.float32)
    xt = engine.tensor(x, device=device, requires_grad=True)
    y = CASES[case](xt)
    w = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    (y * engine.tensor(w, device=device)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("case", CASES)
def test_deterministic_gradients_equal_the_cpu_and_repeat_bit_for_bit(device, case, deterministic):
    if device == "cuda":  # the ordered path, not CuPy's atomics
        cp = cupy()
        real_add = cp.add

        class NoAtomics:
            def __getattr__(self, name):
                if name == "at":
                    raise AssertionError("cupy.add.at ran in deterministic mode")
                return getattr(real_add, name)

            def __call__(self, *a, **k):
                return real_add(*a, **k)

        cp.add = NoAtomics()
        try:
            runs = [_grad(case, device) for _ in range(2)]
        finally:
            cp.add = real_add
    else:
        runs = [_grad(case, device) for _ in range(2)]
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    want = _grad(case, "cpu")
    for got, exp in zip(runs[0], want, strict=True):
        np.testing.assert_array_equal(got, exp)  # same order of addition as NumPy's add.at


def test_the_switch_is_pytorchs(deterministic):
    assert engine.are_deterministic_algorithms_enabled() is True
    engine.use_deterministic_algorithms(False)
    assert engine.are_deterministic_algorithms_enabled() is False
    with pytest.raises(TypeError, match="bool"):
        engine.use_deterministic_algorithms(1)


def test_a_float16_scatter_add_on_cuda_has_no_deterministic_path(deterministic):
    if not engine.cuda.is_available():
        pytest.skip("needs cuda")
    x = engine.zeros(4, dtype="float16", device="cuda")
    idx = engine.tensor([0, 0, 1], device="cuda")
    with pytest.raises(RuntimeError, match="float16 has no deterministic"):
        engine.scatter_add(x, 0, idx, engine.ones(3, dtype="float16", device="cuda"))
    engine.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="no deterministic"):
        out = engine.scatter_add(x, 0, idx, engine.ones(3, dtype="float16", device="cuda"))
    assert out.tolist() == [2.0, 1.0, 0.0, 0.0]
