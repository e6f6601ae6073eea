"""The batch-norm kernels of ``kernels/cuda/norm.cu`` (host build) against NumPy: statistics,
output, running statistics and the three gradients, float and double, over several grids and
slice counts (one sample a slice, uneven slices, one slice)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

from kernels import launch

CTYPE = {np.float32: "float", np.float64: "double"}
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]
SHAPES = [(5, 3, 7), (2, 4, 1), (3, 2, 33)]  # (N, C, HW): HW = 1 is BatchNorm1d's (N, C)


@pytest.fixture(scope="module")
def module():
    src = "norm.cu"
    return hostbuild.build(launch.CUDA_DIR / src, launch.name_expressions(src))


def _run(module, name, dtype, grid, total, args):
    blocks, threads = grid
    fn = module.get_function(f"{name}<{CTYPE[dtype]}>")
    fn((blocks or launch.blocks(total),), (threads,), (*args[0], np.int64(total), *args[1]))


def _reference(x, gy, w, b, eps, rm, rv, momentum):
    axes = (0, 2)
    mean, var = x.mean(axes), x.var(axes)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean[:, None]) * invstd[:, None]
    y = xhat * w[:, None] + b[:, None]
    m = x.shape[0] * x.shape[2]
    rm2 = (1 - momentum) * rm + momentum * mean
    rv2 = (1 - momentum) * rv + momentum * var * m / (m - 1)
    sg, sgx = gy.sum(axes), (gy * xhat).sum(axes)
    gx = (w * invstd)[:, None] * (gy - sg[:, None] / m - xhat * sgx[:, None] / m)
    return dict(y=y, mean=mean, var=var, invstd=invstd, rm=rm2, rv=rv2, gx=gx, gw=sgx, gb=sg)


@pytest.mark.parametrize("slices", [1, 3, 16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernels_match_numpy(module, dtype, grid, shape, slices):
    n, c, hw = shape
    s = min(slices, n * hw)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)  # an offset: the mean matters
    gy = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5
    eps, momentum = 1e-5, 0.1
    want = _reference(*(a.astype(np.float64) for a in (x, gy, w, b)), eps, rm, rv, momentum)
    ints = (np.int32(n), np.int32(c), np.int32(hw), np.int32(s))
    dx, part = sim.asarray(x), sim.empty((2, c, s), dtype)
    _run(module, "batch_norm_partials", dtype, grid, c * s, ((dx, part), ints))
    y, mean, var, invstd = (sim.empty(a, dtype) for a in (shape, c, c, c))
    drm, drv = sim.asarray(rm), sim.asarray(rv)
    arrays = (dx, part, sim.asarray(w), sim.asarray(b), y, mean, var, invstd, drm, drv)
    flags = (np.int32(1),) * 3
    scalars = (dtype(eps), dtype(momentum))
    _run(module, "batch_norm_forward", dtype, grid, x.size, (arrays, ints + scalars + flags))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    got = dict(y=y, mean=mean, var=var, invstd=invstd, rm=drm, rv=drv)
    for k, v in got.items():
        np.testing.assert_allclose(v.get(), want[k], rtol=tol, atol=tol, err_msg=k)
    dgy, part2 = sim.asarray(gy), sim.empty((2, c, s), dtype)
    _run(module, "batch_norm_backward_partials", dtype, grid, c * s,
         ((dgy, dx, mean, invstd, part2), ints))  # fmt: skip
    gx, gw, gb = sim.empty(shape, dtype), sim.empty(c, dtype), sim.empty(c, dtype)
    arrays = (dgy, dx, mean, invstd, sim.asarray(w), part2, gx, gw, gb)
    _run(module, "batch_norm_backward", dtype, grid, x.size,
         (arrays, ints + (np.int32(1), np.int32(1))))  # fmt: skip
    for k, v in dict(gx=gx, gw=gw, gb=gb).items():
        np.testing.assert_allclose(v.get(), want[k], rtol=tol * 10, atol=tol * 10, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_weight_bias_running_or_gx_nothing_else_is_touched(module, dtype):
    n, c, hw, s = 4, 3, 5, 2
    rng = np.random.default_rng(1)
    x, gy = rng.standard_normal((n, c, hw)).astype(dtype), rng.standard_normal((n, c, hw))
    ones, zeros = np.ones(c), np.zeros(c)
    want = _reference(x.astype(np.float64), gy, ones, zeros, 1e-5, zeros, ones, 0.0)
    ints = (np.int32(n), np.int32(c), np.int32(hw), np.int32(s))
    dx, part = sim.asarray(x), sim.empty((2, c, s), dtype)
    _run(module, "batch_norm_partials", dtype, (None, 256), c * s, ((dx, part), ints))
    y, mean, var, invstd = (sim.empty(a, dtype) for a in ((n, c, hw), c, c, c))
    sentinel = sim.asarray(np.full(c, 7, dtype))
    arrays = (dx, part, sentinel, sentinel, y, mean, var, invstd, sentinel, sentinel)
    tail = (dtype(1e-5), dtype(0.5), np.int32(0), np.int32(0), np.int32(0))
    _run(module, "batch_norm_forward", dtype, (None, 256), x.size, (arrays, ints + tail))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.get(), want["y"], rtol=tol, atol=tol)
    np.testing.assert_array_equal(sentinel.get(), np.full(c, 7, dtype))
    dgy, part2 = sim.asarray(gy.astype(dtype)), sim.empty((2, c, s), dtype)
    _run(module, "batch_norm_backward_partials", dtype, (None, 256), c * s,
         ((dgy, dx, mean, invstd, part2), ints))  # fmt: skip
    gw, gb = sim.empty(c, dtype), sim.empty(c, dtype)
    arrays = (dgy, dx, mean, invstd, sentinel, part2, sentinel, gw, gb)  # gx: want_gx = 0
    _run(module, "batch_norm_backward", dtype, (None, 256), c,
         (arrays, ints + (np.int32(0), np.int32(0))))  # fmt: skip
    np.testing.assert_array_equal(sentinel.get(), np.full(c, 7, dtype))
    np.testing.assert_allclose(gw.get(), want["gw"], rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(gb.get(), want["gb"], rtol=tol * 10, atol=tol * 10)


def test_strided_weight_and_bias_read_as_their_values():
    """kernels.norm_gpu with weight and bias views (every other element of a parameter): the
    kernels ignore strides, so the wrapper must hand them contiguous copies."""
    from kernels import norm_gpu

    rng = np.random.default_rng(1)
    x = sim.asarray(rng.standard_normal((4, 3, 5)))
    gy = sim.asarray(rng.standard_normal((4, 3, 5)))
    w6, b6 = sim.asarray(rng.standard_normal(6)), sim.asarray(rng.standard_normal(6))
    w, b = w6[::2], b6[::2]
    assert not w.flags.c_contiguous
    got = norm_gpu.batch_norm_forward(x, w, b, 1e-5)
    want = norm_gpu.batch_norm_forward(x, w.copy(), b.copy(), 1e-5)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.get(), e.get())
    mean, invstd = want[1], want[3]
    got = norm_gpu.batch_norm_backward(gy, x, mean, invstd, w)
    want = norm_gpu.batch_norm_backward(gy, x, mean, invstd, w.copy())
    for g, e in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.get(), e.get())
