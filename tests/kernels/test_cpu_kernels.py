"""NumPy kernels vs naive loop references (tiny shapes) and vs torch.nn.functional."""

from __future__ import annotations

import numpy as np
import pytest
import window_calls as K

from kernels import cpu, geometry

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # the oracle is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")


# ---------------------------------------------------------------- naive references (tests only)


def _ref_out(n, k, s, p, d):
    """The output length, written here from the definition (the oracle does not use the
    geometry it checks)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def ref_im2col(x, kh, kw, sy, sx, ph, pw, dy, dx):
    N, C, H, W = x.shape
    OH, OW = _ref_out(H, kh, sy, ph, dy), _ref_out(W, kw, sx, pw, dx)
    col = np.zeros((N, C, kh, kw, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            for oh in range(OH):
                for ow in range(OW):
                    iy, ix = oh * sy - ph + i * dy, ow * sx - pw + j * dx
                    if 0 <= iy < H and 0 <= ix < W:
                        col[:, :, i, j, oh, ow] = x[:, :, iy, ix]
    return col


def ref_conv2d(x, w, b, s, p, d, groups):
    """Direct definition: y[n, o] = sum over the o's group channels and the window."""
    N, C, H, W = x.shape
    Co, Cg, kh, kw = w.shape
    OH, OW = _ref_out(H, kh, s[0], p[0], d[0]), _ref_out(W, kw, s[1], p[1], d[1])
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    y = np.zeros((N, Co, OH, OW))
    for o in range(Co):
        g = o // (Co // groups)
        for oh in range(OH):
            for ow in range(OW):
                win = xp[:, g * Cg : (g + 1) * Cg, oh * s[0] :: d[0], ow * s[1] :: d[1]]
                y[:, o, oh, ow] = (win[:, :, :kh, :kw] * w[o]).sum(axis=(1, 2, 3))
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_max_pool(x, kh, kw, s, p, d):
    """(y, argmax) by scanning each window in order: first max wins, -inf padding."""
    N, C, H, W = x.shape
    OH, OW = _ref_out(H, kh, s[0], p[0], d[0]), _ref_out(W, kw, s[1], p[1], d[1])
    y = np.full((N, C, OH, OW), -np.inf)
    am = np.full((N, C, OH, OW), -1, dtype=np.int32)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    for k in range(kh * kw):
                        iy = oh * s[0] - p[0] + (k // kw) * d[0]
                        ix = ow * s[1] - p[1] + (k % kw) * d[1]
                        if 0 <= iy < H and 0 <= ix < W:
                            v = x[n, c, iy, ix]
                            if am[n, c, oh, ow] < 0 or v > y[n, c, oh, ow]:
                                y[n, c, oh, ow], am[n, c, oh, ow] = v, k
    return y, am


# ---------------------------------------------------------------- random configurations


def conv_configs(count: int, seed: int):
    """Random valid conv configs: odd sizes, stride > kernel, padding, dilation, groups."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        G = int(rng.integers(1, 4))
        cfg = dict(
            N=int(rng.integers(1, 3)),
            C=G * int(rng.integers(1, 3)),
            Co=G * int(rng.integers(1, 3)),
            G=G,
            H=int(rng.integers(3, 10)),
            W=int(rng.integers(3, 10)),
            k=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            p=(int(rng.integers(0, 3)), int(rng.integers(0, 3))),
            d=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
        )
        OH = (cfg["H"] + 2 * cfg["p"][0] - cfg["d"][0] * (cfg["k"][0] - 1) - 1) // cfg["s"][0]
        OW = (cfg["W"] + 2 * cfg["p"][1] - cfg["d"][1] * (cfg["k"][1] - 1) - 1) // cfg["s"][1]
        if OH >= 0 and OW >= 0:
            out.append(cfg)
    return out


def conv_arrays(cfg, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    kh, kw = cfg["k"]
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"])).astype(dtype)
    w = rng.standard_normal((cfg["Co"], cfg["C"] // cfg["G"], kh, kw)).astype(dtype)
    b = rng.standard_normal(cfg["Co"]).astype(dtype)
    return x, w, b


def conv_args(cfg):
    return cfg["s"], cfg["p"], cfg["d"], cfg["G"]


CONV_CONFIGS = conv_configs(24, seed=3)


def window_args(cfg):
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = cfg["k"], cfg["s"], cfg["p"], cfg["d"]
    return kh, kw, sy, sx, ph, pw, dy, dx


# ---------------------------------------------------------------- im2col / col2im


@pytest.mark.parametrize("cfg", CONV_CONFIGS[:12])
def test_im2col_matches_loops(cfg):
    x, _, _ = conv_arrays(cfg)
    col = K.im2col(x, *window_args(cfg))
    np.testing.assert_array_equal(col, ref_im2col(x, *window_args(cfg)))


def test_im2col_is_a_readonly_view_without_padding():
    x = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    col = K.im2col(x, 2, 3, 1, 2, 0, 0, 1, 1)
    assert col.shape == (2, 3, 2, 3, 4, 2)
    assert np.shares_memory(col, x)
    assert not col.flags.writeable


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_col2im_is_the_adjoint_of_im2col(cfg):
    # <im2col(x), c> == <x, col2im(c)> for random x and c.
    x, _, _ = conv_arrays(cfg, seed=1)
    col = K.im2col(x, *window_args(cfg))
    c = np.random.default_rng(2).standard_normal(col.shape)
    kh, kw, sy, sx, ph, pw, dy, dx = window_args(cfg)
    back = K.col2im(c, sy, sx, ph, pw, cfg["H"], cfg["W"], dy, dx)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(col, c), np.vdot(x, back), rtol=1e-12)


def _nchw_cols(x, g, keep=False):
    """The NCHW columns as conv2d_forward writes them (workspace, or fresh when kept)."""
    col = cpu._workspace_array((g.N, g.C, g.kh, g.kw, g.OH, g.OW), x.dtype, keep)
    cpu._fill_cols(col, x, g)
    return col


@pytest.mark.parametrize("batch_last", [False, True])
@pytest.mark.parametrize(
    "cfg", CONV_CONFIGS[:8] + [dict(H=1, W=4, k=(3, 2), s=(1, 2), p=(1, 3), d=(1, 3), N=2, C=2)]
)
def test_conv_columns_match_im2col(cfg, batch_last):
    # The conv GEMMs' columns are written offset by offset into a reused buffer, padding
    # zeroed by hand: they must equal the im2col view, also where an offset sees only padding.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    expected = np.asarray(K.im2col(x, *window_args(cfg)))
    geo = K.window_geo(x.shape, *window_args(cfg))
    fill = cpu._cols_batch_last if batch_last else _nchw_cols
    fill(x + np.nan, geo)  # leave garbage in the buffer
    cols = fill(x, geo)
    if batch_last:
        expected = expected.transpose(1, 2, 3, 4, 5, 0)
    np.testing.assert_array_equal(cols, expected)
    kept = fill(x, geo, keep=True)  # a Function's own columns: not in the workspace
    fill(x + 1, geo)
    np.testing.assert_array_equal(kept, expected)


def test_col2im_sums_overlaps():
    # 3x3 windows, stride 1, no padding over a 4x4 image: each pixel counts its windows.
    col = np.ones((1, 1, 3, 3, 2, 2))
    expected = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], float)
    np.testing.assert_array_equal(K.col2im(col, 1, 1, 0, 0, 4, 4)[0, 0], expected)


# ---------------------------------------------------------------- conv2d GEMMs


@pytest.mark.parametrize("cfg", CONV_CONFIGS[:10])
def test_conv2d_forward_matches_direct_definition(cfg):
    x, w, b = conv_arrays(cfg)
    y = K.conv2d_forward(x, w, b, *conv_args(cfg))
    np.testing.assert_allclose(y, ref_conv2d(x, w, b, *conv_args(cfg)), rtol=1e-10, atol=1e-10)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_forward_and_gradients_match_torch(cfg, dtype):
    x, w, b = conv_arrays(cfg, dtype)
    s, p, d, G = conv_args(cfg)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = tF.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d, groups=G)
    gy = np.random.default_rng(5).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(gy))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)

    y = K.conv2d_forward(x, w, b, s, p, d, G)
    gx = K.conv2d_backward_input(gy, w, x.shape, s, p, d, G)
    gw = K.conv2d_backward_weight(gy, x, w.shape, s, p, d, G)
    for ours, theirs in ((y, ty), (gx, tx.grad), (gw, tw.grad)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **tol)


@requires_torch
def test_conv2d_backward_input_with_unused_rows_matches_torch():
    # H=8, k=3, s=2: the last input row is in no window, so its gradient is exactly zero.
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 8, 7)), rng.standard_normal((6, 2, 3, 3))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w)
    ty = tF.conv2d(tx, tw, stride=2, groups=2)
    gy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(gy))
    gx = K.conv2d_backward_input(gy, w, x.shape, 2, 0, 1, 2)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert not gx[:, :, 7].any()


@requires_torch
def test_conv2d_backward_input_is_conv_transpose2d():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 3, 3, 2))
    # conv_transpose2d with output_padding=1: output (N, 3, 11, 14), stride 2, padding 1.
    expected = tF.conv_transpose2d(
        torch.tensor(x), torch.tensor(w), stride=2, padding=1, output_padding=1, dilation=(1, 2)
    )
    ours = K.conv2d_backward_input(x, w, (2, 3, 10, 12), 2, 1, (1, 2), 1)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_results_do_not_alias_the_workspace():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    y = K.conv2d_forward(x, w, None, 1, 1)
    kept = y.copy()
    K.conv2d_forward(rng.standard_normal((3, 3, 9, 9)), w, None, 1, 1)
    K.conv2d_backward_weight(rng.standard_normal(y.shape), x, w.shape, 1, 1)
    np.testing.assert_array_equal(y, kept)


def test_conv2d_one_by_one_and_strided_match_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 7))
    w = rng.standard_normal((4, 6, 1, 1))
    for s in (1, 2, 3):
        ours = K.conv2d_forward(x, w, None, s, 0)
        np.testing.assert_allclose(ours, ref_conv2d(x, w, None, (s, s), (0, 0), (1, 1), 1))


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, message",
    [
        ((2, 4, 5, 5), (6, 3, 3, 3), dict(groups=1), r"4 channels.*expects 3 \* groups=1"),
        ((2, 4, 5, 5), (5, 2, 3, 3), dict(groups=2), r"C_out=5; both .* divisible by groups"),
        ((2, 4, 2, 5), (6, 4, 3, 3), dict(), r"output size \(0, 3\).*\(2, 4, 2, 5\)"),
        ((2, 4, 5), (6, 4, 3, 3), dict(), r"4-D \(N, C, H, W\).*\(2, 4, 5\)"),
        ((2, 4, 5, 5), (6, 4, 3, 3), dict(stride=(1, 0)), r"stride must be >= 1"),
        ((2, 4, 5, 5), (6, 4, 3, 3), dict(groups=0), r"groups must be a positive int"),
    ],
)
def test_conv2d_geometry_errors_name_the_sizes(x_shape, w_shape, kwargs, message):
    # Checked once, where the geometry is built; ValueError and RuntimeError both catch it.
    for kind in (ValueError, RuntimeError):
        with pytest.raises(kind, match=message):
            geometry.conv2d(x_shape, w_shape, **kwargs)


# ---------------------------------------------------------------- max pooling


def pool_configs(count: int, seed: int, dilation: bool = True):
    """Random pooling configs with padding <= half the kernel, as PyTorch requires."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilation else (1, 1)
        eff = [d[i] * (k[i] - 1) + 1 for i in range(2)]
        p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
        cfg = dict(
            N=int(rng.integers(1, 3)),
            C=int(rng.integers(1, 4)),
            H=int(rng.integers(3, 10)),
            W=int(rng.integers(3, 10)),
            k=k,
            s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            p=p,
            d=d,
            ceil_mode=bool(rng.integers(0, 2)),
        )
        if all(cfg[n] + 2 * cfg["p"][i] >= eff[i] for i, n in enumerate("HW")):
            out.append(cfg)
    return out


POOL_CONFIGS = pool_configs(24, seed=7)


def pool_input(cfg, dtype=np.float64, seed=0):
    # Distinct values, so that the argmax is unique and torch's and ours must agree exactly.
    rng = np.random.default_rng(seed)
    n = cfg["N"] * cfg["C"] * cfg["H"] * cfg["W"]
    return rng.permutation(n).reshape(cfg["N"], cfg["C"], cfg["H"], cfg["W"]).astype(dtype)


@pytest.mark.parametrize("cfg", [c for c in POOL_CONFIGS if not c["ceil_mode"]][:8])
def test_max_pool2d_forward_matches_loops(cfg):
    x = np.random.default_rng(0).standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    y, am = K.max_pool2d_forward(x, *window_args(cfg))
    ry, ram = ref_max_pool(x, *cfg["k"], cfg["s"], cfg["p"], cfg["d"])
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(am, ram)
    assert am.dtype == np.int32


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", POOL_CONFIGS)
def test_max_pool2d_matches_torch(cfg, dtype):
    x = pool_input(cfg, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = tF.max_pool2d(
        tx, cfg["k"], cfg["s"], cfg["p"], cfg["d"], ceil_mode=cfg["ceil_mode"], return_indices=True
    )
    gy = np.random.default_rng(1).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(gy))

    y, am = K.max_pool2d_forward(x, *window_args(cfg), ceil_mode=cfg["ceil_mode"])
    np.testing.assert_array_equal(y, ty.detach().numpy())
    idx = K.max_pool2d_indices(am, x.shape, *window_args(cfg))
    np.testing.assert_array_equal(idx, tidx.numpy())
    gx = K.max_pool2d_backward(gy, am, x.shape, *window_args(cfg))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@requires_torch
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_max_pool2d_ties_nan_and_inf_follow_torch(k, s, p):
    # Ties (first maximum), NaN (propagates; the last NaN is the index) and -inf inputs.
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(2, 3, 7, 8)).astype(np.float32)
    x[0, 0, 1, 1] = x[0, 1, 2, 2] = x[0, 1, 2, 3] = np.nan
    x[1, 2] = -np.inf
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = tF.max_pool2d(tx, k, s, p, return_indices=True)
    gy = rng.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.tensor(gy))
    y, am = K.max_pool2d_forward(x, k, k, s, s, p, p)
    np.testing.assert_array_equal(y, ty.detach().numpy())  # NaN == NaN here
    np.testing.assert_array_equal(K.max_pool2d_indices(am, x.shape, k, k, s, s, p, p), tidx)
    gx = K.max_pool2d_backward(gy, am, x.shape, k, k, s, s, p, p)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-6)


def test_max_pool2d_backward_keeps_inf_gradients_exact():
    # A masked multiply would give 0 * inf = NaN at the non-argmax positions.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, am = K.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0)
    gx = K.max_pool2d_backward(np.array([[[[np.inf]]]]), am, x.shape, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(gx, [[[[0.0, 0.0], [0.0, np.inf]]]])


def test_max_pool2d_window_entirely_in_padding():
    # kernel 2, dilation 4, padding 1 over 3 pixels: window (-1, 3) holds no pixel.
    x = np.ones((1, 1, 3, 3))
    y, am = K.max_pool2d_forward(x, 2, 2, 1, 1, 1, 1, 4, 4)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == -np.inf and am[0, 0, 0, 0] == -1
    assert K.max_pool2d_indices(am, x.shape, 2, 2, 1, 1, 1, 1, 4, 4)[0, 0, 0, 0] == -1
    gx = K.max_pool2d_backward(np.ones((1, 1, 1, 1)), am, x.shape, 2, 2, 1, 1, 1, 1, 4, 4)
    assert not gx.any()


def test_pool2d_geometry_errors():
    with pytest.raises(ValueError, match=r"at most half of effective kernel size.*pad=\(2, 0\)"):
        geometry.pool2d((1, 1, 5, 5), 3, 1, (2, 0))
    with pytest.raises(ValueError, match=r"4-D.*\(5, 5\)"):
        geometry.pool2d((5, 5), 2)
    with pytest.raises(ValueError, match=r"output size \(0, 0\)"):
        geometry.pool2d((1, 1, 2, 2), 3, 1)
    with pytest.raises(ValueError, match="divisor_override must be positive"):
        geometry.pool2d((1, 1, 4, 4), 2, divisor_override=0)
    # Dilation widens the window that the padding is measured against (PyTorch's rule).
    assert geometry.pool2d((1, 1, 9, 9), 2, 1, 1, dilation=3).padding == (1, 1)


# ---------------------------------------------------------------- average pooling


@requires_torch
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", pool_configs(12, seed=9, dilation=False))
def test_avg_pool2d_matches_torch(cfg, count_include_pad):
    x = np.random.default_rng(0).standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    tx = torch.tensor(x, requires_grad=True)
    ty = tF.avg_pool2d(tx, cfg["k"], cfg["s"], cfg["p"], count_include_pad=count_include_pad)
    gy = np.random.default_rng(1).standard_normal(ty.shape)
    ty.backward(torch.tensor(gy))
    kh, kw, sy, sx, ph, pw, _, _ = window_args(cfg)
    y = K.avg_pool2d_forward(x, kh, kw, sy, sx, ph, pw, count_include_pad)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    gx = K.avg_pool2d_backward(gy, x.shape, kh, kw, sy, sx, ph, pw, count_include_pad)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_avg_pool2d_forward_and_backward_are_adjoint():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 6))
    for cip in (True, False):
        y = K.avg_pool2d_forward(x, 3, 2, 2, 1, 1, 1, cip)
        g = rng.standard_normal(y.shape)
        gx = K.avg_pool2d_backward(g, x.shape, 3, 2, 2, 1, 1, 1, cip)
        np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, gx), rtol=1e-12)


def test_avg_pool2d_known_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(
        K.avg_pool2d_forward(x, 2, 2, 2, 2, 0, 0)[0, 0], [[2.5, 4.5], [10.5, 12.5]]
    )
    # Corner window with padding 1: one real pixel (0) of four when padding counts.
    y = K.avg_pool2d_forward(x, 2, 2, 2, 2, 1, 1, count_include_pad=False)
    assert y[0, 0, 0, 0] == 0.0 and y[0, 0, 0, 1] == 1.5


def test_empty_batch():
    x, w = np.zeros((0, 4, 6, 6)), np.zeros((4, 2, 3, 3))
    y = K.conv2d_forward(x, w, None, 1, 1, 1, 2)
    assert y.shape == (0, 4, 6, 6)
    assert K.conv2d_backward_input(y, w, x.shape, 1, 1, 1, 2).shape == x.shape
    gw = K.conv2d_backward_weight(y, x, w.shape, 1, 1, 1, 2)
    assert gw.shape == w.shape and not gw.any()
    y, am = K.max_pool2d_forward(x, 2, 2, 2, 2, 1, 1)
    assert y.shape == (0, 4, 4, 4)
    assert K.max_pool2d_backward(y, am, x.shape, 2, 2, 2, 2, 1, 1).shape == x.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_bias_in_the_gemm_and_its_kept_columns(dtype):
    # NCHW im2col with a bias: the bias is a row of ones in the columns (one GEMM writes y),
    # and the kept columns are the first K rows of each image's (K + 1, L) block, a view.
    # A 3x2 kernel: no Winograd path takes it (tests/kernels/test_winograd.py reruns this file
    # with Winograd on for every 3x3 stride-1 conv).
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 9, 8)).astype(dtype)
    w = rng.standard_normal((5, 2, 3, 2)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    g = geometry.conv2d(x.shape, w.shape, 1, 1, 1, 1)
    y, cols = cpu.conv2d_forward(x, w, b, g, keep_cols=True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ref = ref_conv2d(x, w, b, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    assert cols.shape == (3, 2, 3, 2, 9, 9) and not cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, cpu.im2col(x, g))
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        cpu.conv2d_backward_weight(gy, x, g, cols),
        cpu.conv2d_backward_weight(gy, x, g),
        rtol=tol,
        atol=tol,
    )
