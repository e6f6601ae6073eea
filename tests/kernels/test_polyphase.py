"""The polyphase input gradient of strided convs (kernels/polyphase.py, opt-in) and the blocked
batch-last -> NCHW copy (kernels/layout.py) against float64 direct convolution, the im2col
path, PyTorch and float64 central differences.

Tolerance: the polyphase path runs the same GEMM as im2col + GEMM and adds each input pixel's
taps in the same (ky, kx) order, so float64 agrees with the direct sum to ~1e-13 relative to
S = the same sum over absolute values; float32 is held to 1e-6 S (measured <= 2e-7).
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from kernels import cpu, geometry, layout, polyphase

# x shape, w shape (C_out, C, kh, kw), stride, padding: DCGAN's 4x4/2 pad 1, odd and even maps,
# padding 0-3 (3 > kernel - 1: the first phase rows are all padding), a patchify 2x2/2, a 6x3
# kernel at stride (3, 3), rectangular strides, batch 1, one channel, maps where the last input
# rows are reached by no window.
CASES = [
    ((8, 8, 14, 14), (16, 8, 4, 4), (2, 2), (1, 1)),
    ((3, 5, 9, 7), (4, 5, 4, 4), (2, 2), (1, 1)),
    ((1, 1, 8, 8), (3, 1, 4, 4), (2, 2), (0, 0)),
    ((2, 3, 11, 10), (5, 3, 4, 6), (2, 3), (1, 2)),
    ((2, 4, 13, 9), (3, 4, 6, 3), (3, 3), (1, 0)),
    ((4, 6, 16, 16), (7, 6, 2, 2), (2, 2), (0, 0)),
    ((2, 2, 7, 7), (2, 2, 4, 4), (2, 2), (3, 3)),
    ((2, 3, 10, 11), (2, 3, 4, 4), (2, 2), (0, 0)),  # last input row/col reached by no window
]
IDS = [f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}" for c in CASES]
TOL = {np.float32: 1e-6, np.float64: 1e-12}


@pytest.fixture
def on():
    with polyphase.set_enabled(True):
        yield


def _direct_grad_input(gy, w, x_shape, s, p):
    """float64 dL/dx of y[n,k,o] = sum x_pad[n,c,s o + t] w[k,c,t], tap by tap."""
    N, C, H, W = x_shape
    _, _, kh, kw = w.shape
    OH, OW = gy.shape[2:]
    gxp = np.zeros((N, C, H + 2 * p[0] + kh + s[0], W + 2 * p[1] + kw + s[1]))
    for ky in range(kh):
        for kx in range(kw):
            win = gxp[:, :, ky : ky + s[0] * OH : s[0], kx : kx + s[1] * OW : s[1]]
            win += np.einsum("nkhw,kc->nchw", gy.astype(np.float64), w[:, :, ky, kx])
    return gxp[:, :, p[0] : p[0] + H, p[1] : p[1] + W]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, s, p", CASES, ids=IDS)
def test_input_gradient_matches_float64_direct_and_im2col(on, xs, ws, s, p, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(ws).astype(dtype)
    g = geometry.conv2d(xs, ws, s, p)
    assert polyphase.applies(g, np.dtype(dtype))
    gy = rng.standard_normal(g.y_shape).astype(dtype)
    before = (gy.copy(), w.copy())
    gx = cpu.conv2d_backward_input(gy, w, g)
    np.testing.assert_array_equal(gy, before[0])  # inputs left unchanged
    np.testing.assert_array_equal(w, before[1])
    assert gx.shape == g.x_shape and gx.dtype == dtype and gx.flags.c_contiguous
    want = _direct_grad_input(gy, w.astype(np.float64), xs, s, p)
    S = _direct_grad_input(np.abs(gy), np.abs(w).astype(np.float64), xs, s, p).max()
    assert np.abs(gx - want).max() <= TOL[dtype] * S
    with polyphase.set_enabled(False):
        np.testing.assert_allclose(gx, cpu.conv2d_backward_input(gy, w, g), rtol=0,
                                   atol=TOL[dtype] * S)  # fmt: skip


@pytest.mark.parametrize(
    "ws, s, d, groups",
    [
        ((4, 4, 3, 3), 2, 1, 1),
        ((4, 4, 4, 4), 2, 2, 1),
        ((4, 2, 4, 4), 2, 1, 2),
        ((4, 4, 4, 4), 1, 1, 1),
    ],
    ids=["kernel-not-multiple", "dilated", "groups", "stride-1"],
)
def test_ineligible_geometries_fall_through_to_im2col(on, ws, s, d, groups):
    rng = np.random.default_rng(1)
    xs = (8, 4, 12, 12)
    w = rng.standard_normal(ws)
    g = geometry.conv2d(xs, ws, s, 1, d, groups)
    assert not polyphase.applies(g, np.dtype(np.float64))
    gy = rng.standard_normal(g.y_shape)
    with polyphase.set_enabled(False):
        want = cpu.conv2d_backward_input(gy, w, g)
    np.testing.assert_array_equal(cpu.conv2d_backward_input(gy, w, g), want)


def test_off_by_default_and_the_switches(monkeypatch):
    g = geometry.conv2d((8, 8, 14, 14), (16, 8, 4, 4), 2, 1)
    monkeypatch.delenv(polyphase.ENV_VAR, raising=False)
    assert polyphase.mode_from_env() == "0"
    monkeypatch.setenv(polyphase.ENV_VAR, "1")
    assert polyphase.mode_from_env() == "1"
    monkeypatch.setenv(polyphase.ENV_VAR, "yes")
    with pytest.raises(ValueError, match="TENSORTAPE_POLYPHASE must be 0 or 1"):
        polyphase.mode_from_env()
    before = polyphase.mode()
    try:
        polyphase.set_mode(True)
        assert polyphase.applies(g, np.dtype(np.float32))
        with polyphase.set_enabled(False):
            assert not polyphase.applies(g, np.dtype(np.float32))
        assert polyphase.applies(g, np.dtype(np.float32))
        polyphase.set_mode("0")
        assert not polyphase.applies(g, np.dtype(np.float32))
        with pytest.raises(ValueError, match="set_mode: expected a bool"):
            polyphase.set_mode("all")
    finally:
        polyphase.set_mode(before)


# Through the engine ------------------------------------------------------------------------
def test_gradcheck_float64_conv_and_transposed_conv(on):
    rng = np.random.default_rng(2)
    x = engine.tensor(rng.standard_normal((2, 2, 7, 6)), requires_grad=True)
    w = engine.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    z = engine.tensor(rng.standard_normal((2, 3, 4, 3)), requires_grad=True)
    wt = engine.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    assert engine.gradcheck(lambda x, w: F.conv2d(x, w, stride=2, padding=1), [x, w])
    assert engine.gradcheck(
        lambda z, w: F.conv_transpose2d(z, w, stride=2, padding=1, output_padding=1), [z, wt]
    )


@pytest.mark.parametrize("batch", [1, 16])
def test_dcgan_layers_match_torch_float32(on, batch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z = rng.standard_normal((batch, 16, 7, 7)).astype(np.float32)
    wt = (0.1 * rng.standard_normal((16, 8, 4, 4))).astype(np.float32)
    w = (0.1 * rng.standard_normal((4, 8, 4, 4))).astype(np.float32)
    ours = [engine.tensor(a, requires_grad=True) for a in (z, wt, w)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (z, wt, w)]

    def run(F_, z, wt, w):  # generator layer then discriminator layer, as DCGAN
        return F_.conv2d(F_.conv_transpose2d(z, wt, stride=2, padding=1).tanh(), w, stride=2,
                         padding=1)  # fmt: skip

    y, ty = run(F, *ours), run(torch.nn.functional, *theirs)
    gy = rng.standard_normal(ty.shape).astype(np.float32)
    y.backward(engine.tensor(gy))
    ty.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-4)


# The blocked copy --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape", [(3, 5, 7, 64), (2, 40, 30, 64), (1, 1, 1, 1), (5, 3, 300, 8), (4, 2, 2, 1)]
)
def test_batch_first_equals_the_transpose_also_of_views(shape):
    rng = np.random.default_rng(4)
    a = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(layout.batch_first(a), a.transpose(3, 0, 1, 2))
    view = a[:, 1:, :-1] if shape[1] > 1 and shape[2] > 1 else a[::-1]
    got = layout.batch_first(view)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, view.transpose(3, 0, 1, 2))
