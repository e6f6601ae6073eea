"""The fused loss kernels of ``kernels/cuda/loss.cu`` (cross-entropy, BCE on logits) against
NumPy, for float and double: built with ``cuda_sim.hostbuild`` and launched directly over grids
that run one thread, wrap the grid-stride loop and match the production launch (part 1); then
the engine's cuda paths through whatever ``cupy`` the suite has (part 2)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

import engine
import engine.functional as F
from kernels import launch

CTYPE = {np.float32: "float", np.float64: "double"}
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]
IGNORE = -100


@pytest.fixture(scope="module")
def module():
    return hostbuild.build(launch.CUDA_DIR / "loss.cu", launch.name_expressions("loss.cu"))


def _case(dtype, n=37, c=7, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    t = rng.integers(0, c, n).astype(np.int64)
    t[::5] = IGNORE
    t[3] = c  # out of range
    t[4] = -1  # out of range
    return x, t


def _expected(x, t):
    m = x.max(1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]
    ok = (t >= 0) & (t < x.shape[1])
    loss = np.where(ok, lse - x[np.arange(len(t)), np.where(ok, t, 0)], 0)
    weight = np.where(t == IGNORE, 0, np.where(ok, 1, len(t) + 1))
    return loss, weight, lse, ok


def _grid(grid, total):
    blocks, threads = grid
    return (blocks or launch.blocks(total),), (threads,)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_kernel(module, dtype, grid):
    x, t = _case(dtype)
    n, c = x.shape
    out, lse = sim.empty((2, n), dtype), sim.empty((n,), dtype)
    fn = module.get_function(f"cross_entropy_forward<{CTYPE[dtype]}>")
    fn(*_grid(grid, n), (sim.asarray(x), sim.asarray(t), out, lse, np.int64(n),
                         np.int32(c), np.int32(IGNORE)))  # fmt: skip
    loss, weight, want_lse, _ = _expected(x.astype(np.float64), t)
    np.testing.assert_allclose(lse.get(), want_lse, **TOL[dtype])
    np.testing.assert_allclose(out.get()[0], loss, **TOL[dtype])
    np.testing.assert_array_equal(out.get()[1], weight)


@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_kernel(module, dtype, grid, mean):
    x, t = _case(dtype)
    n, c = x.shape
    _, _, lse, ok = _expected(x.astype(np.float64), t)
    gy, count = np.array([1.5], dtype), np.array([4.0], dtype)
    gx = sim.empty(x.shape, dtype)
    fn = module.get_function(f"cross_entropy_backward<{CTYPE[dtype]}>")
    args = (sim.asarray(x), sim.asarray(t), sim.asarray(lse.astype(dtype)), sim.asarray(gy),
            sim.asarray(count), gx, np.int64(x.size), np.int32(c), np.int32(IGNORE),
            np.int32(mean))  # fmt: skip
    fn(*_grid(grid, x.size), args)
    p = np.exp(x.astype(np.float64) - lse[:, None])
    want = (p - (np.arange(c) == t[:, None])) * (1.5 / 4.0 if mean else 1.5)
    want[~ok | (t == IGNORE)] = 0
    np.testing.assert_allclose(gx.get(), want, **TOL[dtype])


@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_kernel(module, dtype, mean):
    """One thread sums the row losses and counts: the mean or sum, the count, the bad flag."""
    x, t = _case(dtype)
    n = x.shape[0]
    out = sim.empty((2, n), dtype)
    lse = sim.empty((n,), dtype)
    args = (sim.asarray(x), sim.asarray(t), out, lse, np.int64(n), np.int32(7), np.int32(IGNORE))
    module.get_function(f"cross_entropy_forward<{CTYPE[dtype]}>")((1,), (32,), args)
    for bad in (True, False):
        host = out.get()
        if not bad:  # the two out-of-range rows counted as ignored
            host[:, 3:5] = 0
        loss, aux = sim.empty((), dtype), sim.empty((2,), dtype)
        fn = module.get_function(f"cross_entropy_reduce<{CTYPE[dtype]}>")
        fn((1,), (1,), (sim.asarray(host), loss, aux, np.int64(1), np.int32(n), np.int32(mean)))
        total, count = host[0].astype(np.float64).sum(), host[1].astype(np.float64).sum()
        want = total / count if mean else total
        np.testing.assert_allclose(loss.get(), want, **TOL[dtype])
        assert aux.get().tolist() == [count, 1.0 if bad else 0.0]


# Part 2: the engine's cuda path ---------------------------------------------------------------


@pytest.fixture
def cuda():
    if not engine.cuda.is_available():
        pytest.skip("needs cuda (the CuPy stand-in in CI)")
    return "cuda"


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_on_cuda_is_the_fused_function_and_matches_the_cpu(cuda, reduction):
    x, t = _case(np.float64)
    t[3], t[4] = 1, 2  # in range
    results = []
    for device in ("cpu", cuda):
        xt = engine.tensor(x, device=device, requires_grad=True)
        loss = F.cross_entropy(xt, engine.tensor(t, device=device), reduction=reduction)
        loss.backward()
        results.append((loss.item(), xt.grad.numpy(), type(loss.grad_fn).__name__))
    (l0, g0, fn0), (l1, g1, fn1) = results
    assert fn1 == "CrossEntropy" and fn0 != fn1
    assert l1 == pytest.approx(l0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_large_batch_reduces_in_parallel_with_the_same_result(cuda, reduction, monkeypatch):
    """Above F._SMALL_BATCH rows the sums are CuPy reductions (not one thread): same values,
    and a bad target still reported at the next read."""
    x, t = _case(np.float64)
    t[3], t[4] = 1, 2
    xt, tt = engine.tensor(x, device=cuda), engine.tensor(t, device=cuda)
    small = F.cross_entropy(xt, tt, reduction=reduction).item()
    monkeypatch.setattr(F, "_SMALL_BATCH", 0)
    assert F.cross_entropy(xt, tt, reduction=reduction).item() == pytest.approx(small, rel=1e-13)
    F.cross_entropy(xt, engine.tensor(np.full(x.shape[0], 9), device=cuda))
    with pytest.raises(IndexError, match="nll_loss"):
        xt.sum().item()


def test_fused_cross_entropy_has_a_second_derivative(cuda):
    x, t = _case(np.float64, n=6, c=4)
    t[:] = [0, 3, IGNORE, 1, 2, 2]
    grads = []
    for device in ("cpu", cuda):
        xt = engine.tensor(x, device=device, requires_grad=True)
        loss = F.cross_entropy(xt, engine.tensor(t, device=device))
        (gx,) = engine.autograd.grad(loss, (xt,), create_graph=True)
        (gx * gx).sum().backward()
        grads.append(xt.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-15)


def test_all_rows_ignored_gives_nan_as_pytorch(cuda):
    x = engine.ones(3, 4, device=cuda)
    t = engine.tensor([IGNORE] * 3, device=cuda)
    assert np.isnan(F.cross_entropy(x, t).item())
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0


# Binary cross-entropy on logits ----------------------------------------------------------------


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_logits_kernels(module, dtype, grid):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(301) * 4).astype(dtype)
    x[:4] = [0.0, 1000.0, -1000.0, -0.0]
    t = rng.random(301).astype(dtype)
    c, n = CTYPE[dtype], np.int64(x.size)
    y = sim.empty(x.shape, dtype)
    module.get_function(f"bce_logits_forward<{c}>")(
        *_grid(grid, x.size), (sim.asarray(x), sim.asarray(t), y, n)
    )
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    want = np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))
    np.testing.assert_allclose(y.get(), want, **TOL[dtype])
    gx = sim.empty(x.shape, dtype)
    gy = sim.asarray(np.array([2.0], dtype))
    module.get_function(f"bce_logits_backward<{c}>")(
        *_grid(grid, x.size), (sim.asarray(x), sim.asarray(t), gy, gx, n, dtype(0.25))
    )
    want_g = 2.0 * 0.25 * (1 / (1 + np.exp(-x64)) - t64)
    np.testing.assert_allclose(gx.get(), want_g, **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_on_cuda_is_fused_and_matches_the_cpu(cuda, reduction):
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((6, 5)) * 3, rng.random((6, 5))
    got = []
    for device in ("cpu", cuda):
        xt = engine.tensor(x, device=device, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(
            xt, engine.tensor(t, device=device), reduction=reduction
        )
        (gx,) = engine.autograd.grad(loss, (xt,), create_graph=True)
        (gx * gx).sum().backward()
        got.append((loss.item(), gx.detach().numpy(), xt.grad.numpy(), loss.grad_fn))
    (l0, g0, h0, f0), (l1, g1, h1, f1) = got
    assert type(f1).__name__ == "BCEWithLogitsReduced" and type(f0) is not type(f1)
    assert l1 == pytest.approx(l0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(h1, h0, rtol=1e-12, atol=1e-16)


def test_bce_with_logits_keeps_the_target_gradient_on_cuda(cuda):
    x = engine.tensor([0.5, -1.0], device=cuda, requires_grad=True)
    t = engine.tensor([0.2, 0.9], device=cuda, requires_grad=True)
    F.binary_cross_entropy_with_logits(x, t).backward()
    np.testing.assert_allclose(t.grad.numpy(), [-0.25, 0.5], rtol=1e-6)
