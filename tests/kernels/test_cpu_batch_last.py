"""The batch-last (C, H, W, N) path of the NumPy conv kernels (strided convs, N and C >= 8)
against the NCHW im2col path, the direct definition and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import window_calls as K

import engine
import engine.functional as F
from kernels import cpu, winograd

CASES = [
    # x shape, w shape, stride, padding, dilation
    ((8, 8, 9, 9), (5, 8, 3, 3), (2, 2), (1, 1), (1, 1)),
    ((9, 8, 10, 7), (4, 8, 4, 4), (2, 2), (1, 1), (1, 1)),  # DCGAN's 4x4/2 pad 1
    ((8, 10, 11, 9), (6, 10, 3, 2), (3, 2), (0, 1), (1, 1)),  # asymmetric, stride > kernel
    ((8, 8, 12, 12), (3, 8, 3, 3), (2, 3), (2, 1), (2, 1)),  # dilation
    ((8, 9, 6, 6), (7, 9, 1, 1), (2, 2), (0, 0), (1, 1)),  # 1x1
    ((8, 8, 7, 9), (5, 8, 3, 3), (1, 1), (1, 1), (1, 1)),  # stride 1 on a narrow map
    ((9, 8, 11, 10), (6, 8, 3, 3), (1, 1), (3, 2), (2, 1)),  # stride 1, dilated
    ((8, 8, 6, 6), (4, 8, 2, 2), (1, 1), (2, 2), (1, 1)),  # padding > kernel - 1: col2im
]


@pytest.fixture(params=CASES, ids=lambda c: f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}")
def case(request):
    return request.param


def _arrays(case, dtype, seed=0):
    xs, ws, s, p, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


def test_the_cases_take_the_batch_last_path(case):
    xs, ws, s, p, d = case
    assert cpu._use_batch_last(xs[0], xs[1], *s, xs[3], 1)
    assert not cpu._use_batch_last(xs[0], xs[1], 1, 1, 32, 1)  # wide stride-1 maps: NCHW
    assert not cpu._use_batch_last(4, xs[1], *s, xs[3], 1)
    assert not cpu._use_batch_last(xs[0], xs[1], *s, xs[3], 2)


def _nchw(monkeypatch, fn, *args):
    """``fn(*args)`` with the batch-last layout switched off: the NCHW path's result."""
    with monkeypatch.context() as m:
        m.setattr(cpu, "BATCH_LAST_MIN", 1 << 30)
        return fn(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_gradients_match_the_nchw_path(case, dtype, monkeypatch):
    xs, ws, s, p, d = case
    x, w, b = _arrays(case, dtype)
    y = K.conv2d_forward(x, w, b, s, p, d)
    assert y.dtype == dtype and y.flags.c_contiguous
    ref = _nchw(monkeypatch, K.conv2d_forward, x, w, b, s, p, d)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)

    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx = K.conv2d_backward_input(gy, w, xs, s, p, d)
    gx_ref = _nchw(monkeypatch, K.conv2d_backward_input, gy, w, xs, s, p, d)
    assert gx.dtype == dtype and gx.shape == xs and gx.flags.c_contiguous
    np.testing.assert_allclose(gx, gx_ref, rtol=tol, atol=tol)

    gw = K.conv2d_backward_weight(gy, x, ws, s, p, d)
    gw_ref = _nchw(monkeypatch, K.conv2d_backward_weight, gy, x, ws, s, p, d)
    assert gw.dtype == dtype and gw.shape == ws
    np.testing.assert_allclose(gw, gw_ref, rtol=tol, atol=tol * 10)


def test_forward_matches_the_direct_definition():
    xs, ws, s, p, d = CASES[3]
    x, w, b = _arrays(CASES[3], np.float64)
    y = K.conv2d_forward(x, w, b, s, p, d)
    N, C, H, W = xs
    Co, _, kh, kw = ws
    xp_ = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    ref = np.zeros_like(y)
    for oy in range(y.shape[2]):
        for ox in range(y.shape[3]):
            win = xp_[:, :, oy * s[0] :: d[0], ox * s[1] :: d[1]][:, :, :kh, :kw]
            ref[:, :, oy, ox] = np.einsum("nchw,ochw->no", win, w) + b
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_adjoint_identities(case):
    """<conv(x), gy> = <x, backward_input(gy)> = <w, backward_weight(gy, x)>."""
    xs, ws, s, p, d = case
    x, w, _ = _arrays(case, np.float64)
    y = K.conv2d_forward(x, w, None, s, p, d)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    lhs = np.vdot(y, gy)
    np.testing.assert_allclose(np.vdot(x, K.conv2d_backward_input(gy, w, xs, s, p, d)), lhs)
    np.testing.assert_allclose(np.vdot(w, K.conv2d_backward_weight(gy, x, ws, s, p, d)), lhs)


def test_engine_gradcheck_through_the_batch_last_path():
    rng = np.random.default_rng(3)
    x = engine.tensor(rng.standard_normal((8, 8, 5, 5)), requires_grad=True)
    w = engine.tensor(rng.standard_normal((3, 8, 3, 3)), requires_grad=True)
    b = engine.tensor(rng.standard_normal(3), requires_grad=True)
    assert engine.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (x, w, b))
    assert engine.gradcheck(
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        (engine.tensor(rng.standard_normal((8, 3, 3, 3)), requires_grad=True), w),
    )


def test_matches_torch_dcgan_shapes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 32, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((24, 32, 4, 4)) * 0.1).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, stride=2, padding=1)
    gy = rng.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.tensor(gy))
    ex = engine.tensor(x, requires_grad=True)
    ew = engine.tensor(w, requires_grad=True)
    ey = F.conv2d(ex, ew, stride=2, padding=1)
    ey.backward(engine.tensor(gy))
    np.testing.assert_allclose(ey.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-3)
    # conv_transpose2d is the same kernel read the other way.
    tt = torch.nn.functional.conv_transpose2d(
        torch.tensor(gy), torch.tensor(w), stride=2, padding=1
    )
    et = F.conv_transpose2d(engine.tensor(gy), engine.tensor(w), stride=2, padding=1)
    np.testing.assert_allclose(et.numpy(), tt.numpy(), rtol=1e-4, atol=1e-4)


# Weight gradients from the forward's columns --------------------------------------------------
@pytest.mark.parametrize(
    "xs, ws, s, p, g",
    [
        ((4, 3, 9, 8), (5, 3, 3, 3), 1, 1, 1),
        ((4, 4, 9, 8), (6, 2, 3, 3), 1, 1, 2),
        ((8, 8, 9, 9), (5, 8, 3, 3), 2, 1, 1),
    ],
    ids=["nchw", "nchw-groups", "batch-last"],
)
@winograd.set_enabled(False)  # the im2col path's columns (Winograd keeps none)
def test_weight_gradient_from_the_kept_columns(xs, ws, s, p, g):
    # The columns a Conv2d node keeps are its own: later convs (which refill the workspace)
    # and the input gradient in between leave them, and the weight gradient, unchanged.
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    geo = K.conv_geo(xs, ws, s, p, 1, g)
    y, cols = cpu.conv2d_forward(x, w, None, geo, keep_cols=True)
    assert cols is not None and cpu.conv2d_forward(x, w, None, geo)[1] is None
    gy = rng.standard_normal(y.shape).astype(np.float32)
    want = cpu.conv2d_backward_weight(gy, x, geo)  # columns recomputed
    cpu.conv2d_forward(x + 1, w, None, geo)
    cpu.conv2d_backward_input(gy, w, geo)
    np.testing.assert_allclose(
        cpu.conv2d_backward_weight(gy, x, geo, cols), want, rtol=1e-4, atol=1e-4
    )
