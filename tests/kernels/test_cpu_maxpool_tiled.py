"""The CPU max-pool fast path (kernel == stride, no padding) against the general path."""

from __future__ import annotations

import numpy as np
import pytest
import window_calls as K

from kernels import cpu

CASES = [  # (kh, kw, H, W): H may leave rows below the last window (floor mode)
    (2, 2, 8, 6),
    (2, 2, 9, 4),
    (3, 3, 7, 9),
    (2, 3, 6, 6),
    (1, 2, 3, 4),
]


def tricky_input(shape, dtype, seed=0):
    # Few distinct values (ties), NaN, +-inf and both zeros.
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=shape).astype(dtype)
    flat = x.reshape(-1)
    pick = rng.choice(flat.size, size=12, replace=False)
    flat[pick[:4]] = np.nan
    flat[pick[4:6]] = np.inf
    flat[pick[6:8]] = -np.inf
    flat[pick[8:]] = -0.0
    return x


def bits(a):
    return a.view(f"u{a.itemsize}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("kh, kw, H, W", CASES)
def test_tiled_forward_is_bitwise_the_general_path(kh, kw, H, W, dtype):
    x = tricky_input((2, 3, H, W), dtype)
    assert cpu._tiles(K.pool_geo(x.shape, kh, kw, kh, kw, 0, 0))
    y, am = K.max_pool2d_forward(x, kh, kw, kh, kw, 0, 0)
    # A Fortran-ordered copy is not C-contiguous, so it takes the general path.
    ry, ram = K.max_pool2d_forward(np.asfortranarray(x), kh, kw, kh, kw, 0, 0)
    assert y.dtype == x.dtype and am.dtype == np.int32 and y.shape == (2, 3, H // kh, W // kw)
    np.testing.assert_array_equal(bits(y), bits(np.ascontiguousarray(ry)))
    np.testing.assert_array_equal(am, ram)


@pytest.mark.parametrize("kh, kw, H, W", CASES)
def test_tiled_backward_scatters_each_gradient_to_its_argmax(kh, kw, H, W):
    rng = np.random.default_rng(1)
    x = tricky_input((2, 3, H, W), np.float32)
    y, am = K.max_pool2d_forward(x, kh, kw, kh, kw, 0, 0)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gy[0, 0, 0, 0], gy[1, 2, -1, -1] = np.inf, -0.0
    gx = K.max_pool2d_backward(gy, am, x.shape, kh, kw, kh, kw, 0, 0)
    ref = np.zeros(x.shape, np.float32)
    for n, c, oh, ow in np.ndindex(*y.shape):
        k = am[n, c, oh, ow]
        ref[n, c, oh * kh + k // kw, ow * kw + k % kw] = gy[n, c, oh, ow]
    np.testing.assert_array_equal(bits(gx), bits(ref))


def test_tiled_results_do_not_alias_the_reused_scratch():
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, 2, 2, 4, 4)).astype(np.float32)
    y1, am1 = K.max_pool2d_forward(x1, 2, 2, 2, 2, 0, 0)
    gx1 = K.max_pool2d_backward(np.ones_like(y1), am1, x1.shape, 2, 2, 2, 2, 0, 0)
    keep = y1.copy(), am1.copy(), gx1.copy()
    y2, am2 = K.max_pool2d_forward(x2, 2, 2, 2, 2, 0, 0)
    K.max_pool2d_backward(-np.ones_like(y2), am2, x2.shape, 2, 2, 2, 2, 0, 0)
    for a, b in zip((y1, am1, gx1), keep):
        np.testing.assert_array_equal(a, b)


def test_only_plain_tiling_windows_take_the_fast_path():
    assert cpu._tiles(K.pool_geo((1, 1, 4, 4), 2, 2, 2, 2, 0, 0))
    assert not cpu._tiles(K.pool_geo((1, 1, 4, 4), 2, 2, 2, 2, 1, 1))  # padding
    assert not cpu._tiles(K.pool_geo((1, 1, 5, 5), 2, 2, 2, 2, 0, 0))  # W not tiled
    assert not cpu._tiles(K.pool_geo((1, 1, 4, 4), 2, 2, 1, 1, 0, 0))  # overlapping
    assert not cpu._tiles(K.pool_geo((0, 1, 4, 4), 2, 2, 2, 2, 0, 0))  # empty batch
