"""Ops whose backward formula is written once (Function.operands / results): run on raw arrays
when the backward is not recorded, it gives the gradients of the same formula in engine ops
(create_graph=True), and matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F


def _grads_both_ways(fn, inputs, seed=0):
    """(gradients with create_graph=False, gradients with create_graph=True)."""
    y = fn(*inputs)
    gy = engine.tensor(np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype))
    fast = engine.grad(fn(*inputs), inputs, gy)
    recorded = engine.grad(fn(*inputs), inputs, gy, create_graph=True)
    return fast, recorded


def _leaves(*shapes, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    return [engine.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


@pytest.mark.parametrize(
    "x_shape, bias", [((5, 4), True), ((5, 4), False), ((2, 3, 4), True), ((4,), True)]
)
def test_linear_fast_backward_matches_the_recorded_one(x_shape, bias):
    shapes = [x_shape, (3, 4)] + ([(3,)] if bias else [])
    inputs = _leaves(*shapes)
    fast, recorded = _grads_both_ways(F.linear, inputs)
    for f, r, t in zip(fast, recorded, inputs, strict=True):
        assert f.shape == t.shape and f.grad_fn is None
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=1e-12, atol=1e-12)


def test_linear_fast_backward_skips_inputs_without_grad():
    x, w, b = _leaves((5, 4), (3, 4), (3,))
    x.requires_grad_(False)
    F.linear(x, w, b).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), np.ones((5, 3)).T @ x.numpy())
    np.testing.assert_allclose(b.grad.numpy(), np.full(3, 5.0))


def test_matmul_2d_fast_backward_matches_the_recorded_one():
    a, b = _leaves((4, 6), (6, 3))
    fast, recorded = _grads_both_ways(engine.matmul, [a, b])
    for f, r in zip(fast, recorded, strict=True):
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=1e-12, atol=1e-12)


def test_linear_and_matmul_match_torch_in_float32():
    torch = pytest.importorskip("torch")
    x, w, b = _leaves((7, 5), (4, 5), (4,), dtype=np.float32)
    tx, tw, tb = (torch.tensor(t.numpy(), requires_grad=True) for t in (x, w, b))
    (F.linear(x, w, b) @ w).sum().backward()
    (torch.nn.functional.linear(tx, tw, tb) @ tw).sum().backward()
    for ours, theirs in ((x, tx), (w, tw), (b, tb)):
        assert ours.grad.dtype == np.float32
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("slope", [0.2, 0.0, 1.0, 1.5, -0.3])
def test_leaky_relu_any_slope(slope):
    (x,) = _leaves((6, 7))
    y = F.leaky_relu(x, slope)
    xa = x.numpy()
    np.testing.assert_allclose(y.numpy(), np.where(xa > 0, xa, xa * slope))
    assert engine.gradcheck(lambda t: F.leaky_relu(t, slope), (x,))
    # Second order: d/dx of sum(leaky(x)^2) is 2 leaky(x) leaky'(x); differentiate it again.
    (g,) = engine.grad((F.leaky_relu(x, slope) ** 2).sum(), (x,), create_graph=True)
    (gg,) = engine.grad(g.sum(), (x,))
    np.testing.assert_allclose(gg.numpy(), 2 * np.where(xa > 0, 1.0, slope) ** 2)


def test_leaky_relu_float32_matches_torch():
    torch = pytest.importorskip("torch")
    (x,) = _leaves((64, 8, 5, 5), dtype=np.float32)
    tx = torch.tensor(x.numpy(), requires_grad=True)
    y = F.leaky_relu(x, 0.2)
    ty = torch.nn.functional.leaky_relu(tx, 0.2)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    y.backward(engine.tensor(gy))
    ty.backward(torch.tensor(gy))
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


_SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 2.5, -2.5, 7e3, -7e3]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.01, 0.0, 1.0, 1.5, -0.5])
def test_leaky_relu_unrecorded_backward_is_one_array_product(dtype, slope, monkeypatch):
    """Not recorded, the input gradient is the scale times gy on raw arrays (no Tensor Mul),
    bit for bit gy where x > 0 and gy * slope elsewhere: NaN, inf and -0.0 in x and in gy."""
    from engine.ops.math import Mul

    rng = np.random.default_rng(7)
    values = np.array(_SPECIAL * 3 + list(rng.standard_normal(64)))
    xa = rng.permutation(values).astype(dtype)
    gya = rng.permutation(values).astype(dtype)
    x = engine.tensor(xa, requires_grad=True)
    y = F.leaky_relu(x, slope)
    calls = []
    monkeypatch.setattr(Mul, "forward", lambda self, *a: calls.append(a) or a[0] * a[1])
    y.backward(engine.tensor(gya))
    assert calls == []
    with np.errstate(invalid="ignore", over="ignore"):
        want = np.where(xa > 0, gya, gya * dtype(slope))
    assert x.grad.dtype == dtype
    assert x.grad.numpy().tobytes() == want.tobytes()


def test_leaky_relu_special_values_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    xa = rng.permutation(np.array(_SPECIAL * 4, np.float32))
    gya = rng.permutation(np.array(_SPECIAL * 4, np.float32))
    x, tx = engine.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
    y, ty = F.leaky_relu(x, 0.2), torch.nn.functional.leaky_relu(tx, 0.2)
    y.backward(engine.tensor(gya))
    ty.backward(torch.tensor(gya))
    assert y.numpy().tobytes() == ty.detach().numpy().tobytes()
    assert x.grad.numpy().tobytes() == tx.grad.numpy().tobytes()


def test_bce_with_logits_extremes_match_log1p():
    x = np.array([-1000, -104, -90, -20, -17, -1, 0, 1, 17, 90, 1000], np.float32)
    for t in (0.0, 0.25, 1.0):
        target = np.full_like(x, t)
        got = F.binary_cross_entropy_with_logits(
            engine.tensor(x), engine.tensor(target), reduction="none"
        ).numpy()
        x64 = x.astype(np.float64)
        want = np.maximum(x64, 0) - x64 * t + np.log1p(np.exp(-np.abs(x64)))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-45)
    nan = F.binary_cross_entropy_with_logits(
        engine.tensor(np.array([np.nan], np.float32)),
        engine.tensor(np.zeros(1, np.float32)),
        reduction="none",
    )
    assert np.isnan(nan.numpy()).all()


_LOGITS = [-1000, -104, -90, -20, -17, -1, -1e-3, 0, 1e-3, 1, 17, 90, 1000]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_fast_backward_matches_the_recorded_one(dtype):
    """Both inputs require grad; logits from -1000 to 1000, where sigmoid under- and overflows."""
    rng = np.random.default_rng(4)
    x = engine.tensor(np.array(_LOGITS, dtype), requires_grad=True)
    t = engine.tensor(rng.random(len(_LOGITS)).astype(dtype), requires_grad=True)

    def loss(a, b):
        return F.binary_cross_entropy_with_logits(a, b, reduction="none")

    fast, recorded = _grads_both_ways(loss, [x, t])
    for f, r in zip(fast, recorded, strict=True):
        assert f.dtype == dtype
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=4 * np.finfo(dtype).eps, atol=0)
    x64 = np.array(_LOGITS, np.float64)
    sig = np.where(
        x64 >= 0, 1 / (1 + np.exp(-np.abs(x64))), np.exp(-np.abs(x64)) / (1 + np.exp(-np.abs(x64)))
    )
    gy = np.random.default_rng(0).standard_normal(len(_LOGITS))  # _grads_both_ways' gy, seed 0
    want = gy.astype(dtype).astype(np.float64) * (sig - t.numpy().astype(np.float64))
    np.testing.assert_allclose(fast[0].numpy(), want, rtol=4 * np.finfo(dtype).eps, atol=1e-300)


def test_bce_with_logits_grad_matches_torch_float32():
    torch = pytest.importorskip("torch")
    x = np.array(_LOGITS * 4, np.float32).reshape(4, -1) * np.float32(0.37)
    t = np.random.default_rng(5).random(x.shape).astype(np.float32)
    ours = engine.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    F.binary_cross_entropy_with_logits(ours, engine.tensor(t), reduction="sum").backward()
    torch.nn.functional.binary_cross_entropy_with_logits(
        theirs, torch.tensor(t), reduction="sum"
    ).backward()
    # sigmoid(x) - t cancels where the two are close: compare at float32 resolution of ~0.5
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=2e-7, atol=6e-8)


def test_sigmoid_extremes_float32():
    """Relative accuracy down to the smallest normal float32 (the former tanh form returned 0
    for every x below about -17); deeper results may flush to 0, as torch's do."""
    x = np.array(_LOGITS, np.float32)
    got = engine.tensor(x).sigmoid().numpy()
    want = np.exp(-np.logaddexp(0, -x.astype(np.float64)))
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=np.finfo(np.float32).tiny)
    assert got[x <= -104].max() == 0 and got[x >= 17].min() == 1


def test_bce_with_logits_fast_backward_mixed_dtypes_promote():
    x = engine.tensor(np.array([-2.0, 0.5, 3.0], np.float32), requires_grad=True)
    t = engine.tensor(np.array([0.0, 1.0, 0.25], np.float64))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    fast = engine.grad(loss, (x,), engine.ones_like(loss))[0]
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    recorded = engine.grad(loss, (x,), engine.ones_like(loss), create_graph=True)[0]
    assert loss.dtype == np.float64 and fast.dtype == recorded.dtype
    np.testing.assert_allclose(fast.numpy(), recorded.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_bias_fast_backward_matches_the_recorded_one(dtype):
    x, w, b = _leaves((6, 3, 9, 9), (5, 3, 3, 3), (5,), dtype=dtype)
    fast, recorded = _grads_both_ways(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
    assert fast[2].dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for f, r in zip(fast, recorded, strict=True):
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inner_dimension_one_is_a_multiply_with_blass_values(monkeypatch, dtype):
    # Linear(6272, 1)'s input gradient is (N x 1) @ (1 x 6272): an outer product, which
    # OpenBLAS ran ~10x slower than a multiply. gemm multiplies instead, with the GEMM's values
    # (-0 products come out +0, as BLAS's sum from 0 gives them; inf and NaN alike).
    from engine.ops.linalg import gemm

    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 9)).astype(dtype)
    w = rng.standard_normal((1, 9)).astype(dtype)
    gy = rng.standard_normal((6, 1)).astype(dtype)
    gy[0, 0], gy[1, 0], w[0, 2], w[0, 3] = 0.0, -np.inf, -0.0, np.nan
    want = np.matmul(gy, w)
    inner, matmul = [], np.matmul

    def spy(a, b, **kw):
        inner.append(a.shape[-1])
        return matmul(a, b, **kw)

    monkeypatch.setattr(np, "matmul", spy)
    got = gemm(np, gy, w)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    assert got.dtype == dtype and inner == []
    xt, wt = engine.tensor(x, requires_grad=True), engine.tensor(w, requires_grad=True)
    F.linear(xt, wt).backward(engine.tensor(gy))
    assert 1 not in inner  # the input gradient's product took the multiply
    np.testing.assert_array_equal(xt.grad.numpy(), want)
    np.testing.assert_array_equal(wt.grad.numpy(), matmul(gy.T, x))
