"""Winograd F(4x4, 2x2) and F(7x7, 2x2) on the polyphase components of convs whose kernel is
twice the stride (kernels/winograd.py, "Strided convs"): forward, input gradient (= transposed
conv) and weight gradient against float64 direct convolution, the im2col path, float64 central
differences and PyTorch.

Tolerance, relative to S = the same direct sum over absolute values (the largest term a
rounding error scales with): float32 F(4x4, 2x2) measured <= 1.0e-6 S on every pass (C 16-512,
against 0.2-1.9e-7 for im2col + GEMM; the transforms' points 0, +-1, 2 multiply by up to 8 and
1/6); F(7x7, 2x2), whose points add -2 and +-1/2 (A^T up to 64), measured <= 5.1e-6 S
(DCGAN's 64x64x14x14 -> 128 forward, normal data; 1.5e-6 on its tanh-bounded generator
output, where F(4x4) gave 2.4e-7): both bounded at 1e-5 as for the 3x3 path; float64
measured <= 2.5e-15 S, bounded at 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from kernels import cpu, geometry, winograd

TOL = {np.float32: 1e-5, np.float64: 1e-12}

# x shape, w shape (C_out, C, kh, kw), stride, padding: DCGAN's 4x4/2 pad 1, odd and even maps,
# no padding, padding 3 (the first phase rows all padding), 4x6 kernel at stride (2, 3), 6x6 at
# stride 3, one image, one channel, maps whose last input rows no window reaches, an output
# one tile wide.
CASES = [
    ((8, 8, 14, 14), (16, 8, 4, 4), (2, 2), (1, 1)),
    ((3, 5, 9, 7), (4, 5, 4, 4), (2, 2), (1, 1)),
    ((1, 1, 8, 8), (3, 1, 4, 4), (2, 2), (0, 0)),
    ((2, 3, 11, 10), (5, 3, 4, 6), (2, 3), (1, 2)),
    ((2, 4, 13, 14), (3, 4, 6, 6), (3, 3), (1, 0)),
    ((2, 2, 7, 7), (2, 2, 4, 4), (2, 2), (3, 3)),
    ((2, 3, 10, 11), (2, 3, 4, 4), (2, 2), (0, 0)),
    ((3, 6, 6, 6), (5, 6, 4, 4), (2, 2), (1, 1)),
]
IDS = [f"x{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}" for c in CASES]


@pytest.fixture(autouse=True)
def every_eligible_conv():
    """Every eligible geometry takes the path, whatever the size rule says."""
    with winograd.set_enabled("all"):
        yield


def _direct(x, w, s, p):
    """float64 y[n,k,o] = sum x_pad[n,c,s o + t] w[k,c,t] and its two gradients' helpers."""
    N, C, H, W = x.shape
    _, _, kh, kw = w.shape
    xp = np.zeros((N, C, H + 2 * p[0] + kh + s[0], W + 2 * p[1] + kw + s[1]))
    xp[:, :, p[0] : p[0] + H, p[1] : p[1] + W] = x
    OH, OW = (H + 2 * p[0] - kh) // s[0] + 1, (W + 2 * p[1] - kw) // s[1] + 1
    wins = {}
    for ky in range(kh):
        for kx in range(kw):
            wins[ky, kx] = (slice(ky, ky + s[0] * OH, s[0]), slice(kx, kx + s[1] * OW, s[1]))
    return xp, wins, (OH, OW)


def _forward64(x, w, s, p):
    xp, wins, (OH, OW) = _direct(x.astype(np.float64), w, s, p)
    y = np.zeros((x.shape[0], w.shape[0], OH, OW))
    for (ky, kx), (rows, cols) in wins.items():
        y += np.einsum("nchw,kc->nkhw", xp[:, :, rows, cols], w[:, :, ky, kx].astype(np.float64))
    return y


def _grads64(x, w, gy, s, p):
    """float64 (dL/dx, dL/dw) of the direct conv for output gradient gy."""
    N, C, H, W = x.shape
    xp, wins, _ = _direct(x.astype(np.float64), w, s, p)
    gxp, gw = np.zeros_like(xp), np.zeros(w.shape)
    gy = gy.astype(np.float64)
    for (ky, kx), (rows, cols) in wins.items():
        gw[:, :, ky, kx] = np.einsum("nkhw,nchw->kc", gy, xp[:, :, rows, cols])
        gxp[:, :, rows, cols] += np.einsum("nkhw,kc->nchw", gy, w[:, :, ky, kx].astype(float))
    return gxp[:, :, p[0] : p[0] + H, p[1] : p[1] + W], gw


def _assert_within(got, want, scale, dtype, what):
    err = np.abs(got.astype(np.float64) - want).max()
    bound = TOL[dtype] * max(scale, 1e-300)
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g} (S = {scale:.3g})"


def _check_all_passes(x, w, b, s, p, dtype):
    g = geometry.conv2d(x.shape, w.shape, s, p)
    assert winograd.strided_applies(g, np.dtype(dtype))
    gy = np.random.default_rng(1).standard_normal(g.y_shape).astype(dtype)
    y, kept = cpu.conv2d_forward(x, w, b, g, keep_cols=True)
    assert y.dtype == dtype and y.shape == g.y_shape
    # The forward keeps its transformed tiles of x when one product group held the batch.
    plan = winograd._strided_plan(g, np.dtype(dtype))
    assert isinstance(kept, winograd.KeptTiles) == (plan.ng == plan.N)
    ax, aw, agy = np.abs(x), np.abs(w), np.abs(gy)
    want = _forward64(x, w, s, p) + (0 if b is None else b.reshape(1, -1, 1, 1))
    _assert_within(y, want, _forward64(ax, aw, s, p).max(), dtype, "forward")
    gx_want, gw_want = _grads64(x, w, gy, s, p)
    sx, sw = _grads64(ax, aw, agy, s, p)
    gw = cpu.conv2d_backward_weight(gy, x, g)
    assert gw.dtype == dtype and gw.shape == w.shape and gw.flags.c_contiguous
    _assert_within(gw, gw_want, sw.max(), dtype, "weight gradient")
    if kept is not None:  # from the kept tiles, not from x (zeros here): the same numbers
        kept_v = kept.v.copy()
        gw_kept = cpu.conv2d_backward_weight(gy, np.zeros_like(x), g, kept)
        assert gw_kept.dtype == dtype and gw_kept.shape == w.shape and gw_kept.flags.c_contiguous
        np.testing.assert_array_equal(gw_kept, gw)
        np.testing.assert_array_equal(kept.v, kept_v)  # read, not written
    gx = cpu.conv2d_backward_input(gy, w, g)
    assert gx.dtype == dtype and gx.shape == x.shape and gx.flags.c_contiguous
    _assert_within(gx, gx_want, sx.max(), dtype, "input gradient")
    with winograd.set_enabled(False):  # and the im2col path agrees
        np.testing.assert_allclose(gx, cpu.conv2d_backward_input(gy, w, g), rtol=0,
                                   atol=TOL[dtype] * sx.max())  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, s, p", CASES, ids=IDS)
def test_all_passes_match_float64_direct(xs, ws, s, p, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    _check_all_passes(x, w, b, s, p, dtype)


@pytest.mark.parametrize("m, r", [(4, 3), (4, 2), (7, 2)])
def test_each_algorithm_is_the_correlation_in_float64(m, r):
    """A^T [(G g) * (B^T d)] = the valid correlation of d (m + r - 1 samples) with g, and the
    2-D nesting of it, to float64 rounding: the matrices are right."""
    BT, AT, _, G, _ = winograd._matrices(m, r, np.dtype(np.float64))
    rng = np.random.default_rng(8)
    d, g = rng.standard_normal((20, m + r - 1)), rng.standard_normal((20, r))
    got = np.einsum("ij,tj->ti", AT, (g @ G.T) * (d @ BT.T))
    want = np.stack([np.correlate(a, b, "valid") for a, b in zip(d, g)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    d2, g2 = rng.standard_normal((m + r - 1, m + r - 1)), rng.standard_normal((r, r))
    got2 = AT @ ((G @ g2 @ G.T) * (BT @ d2 @ BT.T)) @ AT.T
    want2 = sum(g2[a, b] * d2[a : a + m, b : b + m] for a in range(r) for b in range(r))
    np.testing.assert_allclose(got2, want2, rtol=0, atol=1e-12)


def test_tile_side_rule():
    """F(7x7) where it computes fewer products over the map than F(4x4) (tiles x (m + 1)^2),
    F(4x4) on a tie; DCGAN's 7x7 outputs take F(7x7), its transposed conv's 8x8 F(4x4)."""
    sides = (1, 3, 4, 5, 6, 7, 8, 12, 14, 16, 21, 28, 32)
    assert [winograd._strided_m(s, s) for s in sides] == [4, 4, 4, 7, 7, 7, 4, 4, 7, 4, 7, 7, 4]
    assert winograd._strided_m(7, 8) == 4  # 4 x 25 = 100 against 2 x 64 = 128
    g = geometry.conv2d((64, 64, 14, 14), (128, 64, 4, 4), 2, 1)
    f32 = np.dtype(np.float32)
    assert (winograd._strided_plan(g, f32).m, winograd._gx_plan(g, f32).m) == (7, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m", [4, 7])
def test_both_tile_sides_on_the_same_maps(monkeypatch, m, dtype):
    """Each algorithm forced on every plan (the forward's, the input gradient's, the weight
    gradient's), on maps of 5x5 to 14x14 outputs, one and several tiles a side: all passes
    within the bounds against float64."""
    monkeypatch.setattr(winograd, "_strided_m", lambda OH, OW: m)
    rng = np.random.default_rng(9)
    for xs, K in (((3, 16, 14, 14), 12), ((2, 8, 28, 26), 5), ((4, 4, 10, 9), 6)):
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal((K, xs[1], 4, 4)).astype(dtype)
        b = rng.standard_normal(K).astype(dtype)
        g = geometry.conv2d(xs, w.shape, 2, 1)
        assert winograd._strided_plan(g, np.dtype(dtype)).m == m
        _check_all_passes(x, w, b, (2, 2), (1, 1), dtype)


def test_float32_bound_on_the_dcgan_shape_at_a_large_magnitude():
    rng = np.random.default_rng(2)
    x = (1e3 * rng.standard_normal((4, 64, 14, 14))).astype(np.float32)
    w = rng.standard_normal((128, 64, 4, 4)).astype(np.float32)
    _check_all_passes(x, w, None, (2, 2), (1, 1), np.float32)


@pytest.mark.parametrize("C, dtype", [(64, np.float32), (32, np.float64), (5, np.float32)])
def test_phase_taps_gather_in_blocks_where_filters_alias(C, dtype):
    # The forward's taps are gathered k-inner, reading w a filter (C kh kw values) apart: 4 KiB
    # for 64 float32 channels of 4x4 and 32 float64 ones, copied 8 filters at a time (20
    # filters: the last block short); 5 channels in one go. The same values either way, and
    # the transposed conv's (flip) unchanged.
    w = np.random.default_rng(8).standard_normal((20, C, 4, 4)).astype(dtype)
    g = geometry.conv2d((2, C, 8, 8), w.shape, 2, 1)
    w6 = w.reshape(20, C, 2, 2, 2, 2)  # (k, c, a, ry, b, rx)
    want = w6.transpose(2, 4, 3, 5, 1, 0).reshape(2, 2, 4 * C, 20)
    np.testing.assert_array_equal(winograd._phase_taps(w, g), want)
    flipped = w6[:, :, ::-1, :, ::-1].transpose(2, 4, 0, 3, 5, 1).reshape(2, 2, 20, 4 * C)
    np.testing.assert_array_equal(winograd._phase_taps(w, g, flip=True), flipped)


@pytest.mark.parametrize("chunk, group", [(1, 1), (1, 3), (2, 1 << 30)])
def test_chunks_and_product_groups_with_short_last_ones(monkeypatch, chunk, group):
    # Budgets in images' worth of tile bytes: one image per chunk and per group; chunks of
    # one in groups of three over five images (the last group short); chunks of two in one
    # group (the last chunk short).
    rng = np.random.default_rng(3)
    xs, ws = (5, 4, 10, 10), (6, 4, 4, 4)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    g = geometry.conv2d(xs, ws, 2, 1)
    n2, T, Ci = 25, 4, 16  # 5x5 outputs in F(4x4, 2x2): 2 x 2 tiles; 4 phases x 4 channels
    monkeypatch.setattr(winograd, "_strided_m", lambda OH, OW: 4)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", chunk * n2 * T * (2 * Ci + 6) * 8)
    monkeypatch.setattr(winograd, "GROUP_BYTES", group * n2 * T * (Ci + 6) * 8)
    plan = winograd._strided_plan(g, x.dtype)
    assert (plan.nb, plan.ng) == (chunk, 5 if group >= 5 else max(1, group // chunk) * chunk)
    _check_all_passes(x, w, None, (2, 2), (1, 1), np.float64)


def test_inputs_left_unchanged_also_strided_views():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 5, 10, 9)).astype(np.float32).transpose(0, 1, 3, 2)  # a view
    w = rng.standard_normal((3, 5, 4, 4)).astype(np.float32)[:, :, ::-1]  # negative strides
    b = rng.standard_normal(3).astype(np.float32)
    g = geometry.conv2d(x.shape, w.shape, 2, 1)
    gy = rng.standard_normal(g.y_shape).astype(np.float32)
    before = [a.copy() for a in (x, w, b, gy)]
    outs = (cpu.conv2d_forward(x, w, b, g)[0], cpu.conv2d_backward_weight(gy, x, g),
            cpu.conv2d_backward_input(gy, w, g))  # fmt: skip
    for a, c in zip((x, w, b, gy), before, strict=True):
        np.testing.assert_array_equal(a, c)
    with winograd.set_enabled(False):
        wants = (cpu.conv2d_forward(x, w, b, g)[0], cpu.conv2d_backward_weight(gy, x, g),
                 cpu.conv2d_backward_input(gy, w, g))  # fmt: skip
    for got, want in zip(outs, wants, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# Through the engine: autograd, double backward, PyTorch ------------------------------------
def test_gradcheck_float64_conv_and_transposed_conv():
    rng = np.random.default_rng(5)
    x = engine.tensor(rng.standard_normal((2, 2, 7, 6)), requires_grad=True)
    w = engine.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    b = engine.tensor(rng.standard_normal(3), requires_grad=True)
    z = engine.tensor(rng.standard_normal((2, 3, 4, 3)), requires_grad=True)
    wt = engine.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    assert engine.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [x, w, b])
    assert engine.gradcheck(
        lambda z, w: F.conv_transpose2d(z, w, stride=2, padding=1, output_padding=1), [z, wt]
    )


def test_double_backward_float64():
    # WGAN-GP on a DCGAN discriminator: the gradient's graph runs all three passes.
    rng = np.random.default_rng(6)
    x = engine.tensor(rng.standard_normal((2, 2, 6, 6)), requires_grad=True)
    w = engine.tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)

    def penalty(x, w):
        y = F.conv2d(x, w, stride=2, padding=1).tanh().sum()
        (gx,) = engine.grad(y, [x], create_graph=True)
        return (gx * gx).sum()

    assert engine.gradcheck(penalty, [x, w])


@pytest.mark.parametrize("batch", [1, 16])
def test_dcgan_layers_match_torch_float32(batch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    z = rng.standard_normal((batch, 32, 7, 7)).astype(np.float32)
    wt = (0.1 * rng.standard_normal((32, 16, 4, 4))).astype(np.float32)
    w = (0.1 * rng.standard_normal((8, 16, 4, 4))).astype(np.float32)
    ours = [engine.tensor(a, requires_grad=True) for a in (z, wt, w)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (z, wt, w)]

    def run(F_, z, wt, w):  # generator layer then discriminator layer, as DCGAN
        return F_.conv2d(F_.conv_transpose2d(z, wt, stride=2, padding=1).tanh(), w, stride=2,
                         padding=1)  # fmt: skip

    with winograd.set_enabled("1"):  # batch 16 is above the size rule, batch 1 below it
        g = geometry.conv2d((batch, 16, 14, 14), (8, 16, 4, 4), 2, 1)
        assert winograd.strided_applies(g, np.dtype(np.float32)) == (batch == 16)
        y = run(F, *ours)
        ty = run(torch.nn.functional, *theirs)
        gy = rng.standard_normal(ty.shape).astype(np.float32)
        y.backward(engine.tensor(gy))
    ty.backward(torch.from_numpy(gy))
    # Within the float32 bound, TOL S, S the same chain over absolute values (F(7x7, 2x2) on
    # the 7x7 maps errs by up to 2e-5 on outputs of up to ~5, S ~14; 1.9e-4 on weight
    # gradients of up to ~27).
    got = [y.numpy()] + [a.grad.numpy() for a in ours]
    want = [ty.detach().numpy()] + [b.grad.numpy() for b in theirs]
    for what, a, b, sc in zip(("y", "z", "wt", "w"), got, want, _abs_chain(torch, z, wt, w, gy)):
        assert np.abs(a - b).max() <= TOL[np.float32] * sc.max(), what


def _abs_chain(torch, z, wt, w, gy):
    """S of conv2d(tanh(conv_transpose2d(z, wt)), w) (stride 2, padding 1) and of its
    gradients for output gradient gy: the same sums over absolute values."""
    tf, tg = torch.nn.functional, torch.nn.grad
    z, wt, w, gy = (torch.from_numpy(a).double() for a in (z, wt, w, gy))
    h = tf.conv_transpose2d(z, wt, stride=2, padding=1).tanh()
    sy = tf.conv2d(h.abs(), w.abs(), stride=2, padding=1)
    sh = tg.conv2d_input(h.shape, w.abs(), gy.abs(), stride=2, padding=1) * (1 - h * h).abs()
    sz = tf.conv2d(sh, wt.abs(), stride=2, padding=1)
    swt = tg.conv2d_weight(sh, wt.shape, z.abs(), stride=2, padding=1)
    sw = tg.conv2d_weight(h.abs(), w.shape, gy.abs(), stride=2, padding=1)
    return [a.numpy() for a in (sy, sz, swt, sw)]


def test_transposed_conv_backward_tiles_its_gradient_once(monkeypatch):
    # conv_transpose2d's backward runs conv(ggx, w) for its input's gradient and hands that
    # forward's kept tiles of ggx to its weight gradient: ggx is tiled once, not twice; and
    # the gradients are the im2col path's.
    rng = np.random.default_rng(7)
    z_a = rng.standard_normal((16, 16, 7, 7)).astype(np.float32)
    w_a = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    gy = engine.tensor(rng.standard_normal((16, 8, 14, 14)).astype(np.float32))
    tiled = []
    input_tiles = winograd._Plan.input_tiles
    monkeypatch.setattr(winograd._Plan, "input_tiles", lambda p: tiled.append(p) or input_tiles(p))

    def grads(f=lambda a: a):
        z, w = (engine.tensor(f(a), requires_grad=True) for a in (z_a, w_a))
        y = F.conv_transpose2d(z, w, stride=2, padding=1)
        tiled.clear()
        y.backward(engine.tensor(f(gy.numpy())))
        return z.grad.numpy(), w.grad.numpy()

    with winograd.set_enabled("all"):
        got = grads()
    assert len(tiled) == 1
    with winograd.set_enabled(False):
        want, scale = grads(), grads(np.abs)  # S: the same sums over absolute values
    for a, b, sc in zip(got, want, scale, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[np.float32] * sc.max())


# Dispatch rule -----------------------------------------------------------------------------
def test_dispatch_rule():
    def geo(C=16, K=16, k=4, s=2, d=1, groups=1, N=16, H=14):
        return geometry.conv2d((N, C, H, H), (K, C // groups, k, k), s, 1, d, groups)

    f32 = np.dtype(np.float32)
    with winograd.set_enabled(True):
        assert winograd.strided_applies(geo(), f32)  # 16 images x 2 x 2 tiles
        assert winograd.strided_applies(geo(), np.dtype(np.float64))
        assert winograd.strided_applies(geo(K=1), f32)
        assert not winograd.strided_applies(geo(), np.dtype(np.float16))
        assert not winograd.strided_applies(geo(C=8), f32)  # short channel rows: im2col
        assert not winograd.strided_applies(geo(N=15), f32)  # 60 tiles
        for other in (geo(k=3), geo(k=5), geo(s=1, k=2), geo(d=2), geo(C=32, K=32, groups=2)):
            assert not winograd.strided_applies(other, f32)
    with winograd.set_enabled("all"):
        assert winograd.strided_applies(geo(C=1, K=1, N=1, H=4), f32)
        assert not winograd.strided_applies(geo(k=3), f32)
    with winograd.set_enabled(False):
        assert not winograd.strided_applies(geo(), f32)
