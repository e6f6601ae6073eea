"""The CUDA kernels of ``kernels/cuda/conv.cu`` and ``pool.cu`` run on the CPU, element by element
against ``kernels.cpu``.

Part 1 builds each source with ``cuda_sim.hostbuild`` for the name expressions ``kernels.gpu``
compiles and launches every kernel directly, over several grids (one thread, a few small blocks
that make the grid-stride loop wrap, and the production launch), on random shapes: odd sizes,
stride > kernel, padding, dilation, ceil mode. Part 2 runs ``kernels.gpu`` itself (conv GEMMs,
groups, pooling) through whatever ``cupy`` the suite has: the stand-in, or a real GPU.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import window_calls as K
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

from kernels import cpu, geometry, gpu, launch

CUDA_DIR = launch.CUDA_DIR
SOURCES = ("conv.cu", "pool.cu")
# (blocks, threads): sequential, wrapping grid-stride loops, and what kernels.launch launches.
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]
BF16 = np.dtype(ml_dtypes.bfloat16)
# Unit roundoff of the 16-bit dtypes: one rounding of a float32 result is within u of it.
UNIT = {np.dtype(np.float16): 2.0**-11, BF16: 2.0**-8}
LOW = [np.float16, BF16]


@pytest.fixture(scope="module")
def modules():
    return {src: hostbuild.build(CUDA_DIR / src, launch.name_expressions(src)) for src in SOURCES}


def run_kernel(modules, source, name, dtype, arrays, total, ints, grid):
    """Launch ``name<T>`` on stand-in copies of ``arrays``; returns them as host arrays.
    ``ints`` is a Geometry (its launch integers) or the integers themselves."""
    if isinstance(ints, geometry.Geometry):
        ints = ints.launch_ints()
    fn = modules[source].get_function(
        f"{name}<{launch.template_args(source, np.dtype(dtype).name)}>"
    )
    dev = [device_array(a) for a in arrays]
    blocks, threads = grid
    if blocks is None:
        blocks = launch.blocks(total)
    fn((blocks,), (threads,), (*dev, np.int64(total), *(np.int32(v) for v in ints)))
    return [d.get() for d in dev]


def device_array(a):
    """A stand-in device copy of ``a``. The stand-in's cupy.asarray refuses bfloat16 (as it models
    no bfloat16 in CuPy 14's routines), so a bfloat16 kernel argument is wrapped directly: these
    tests launch the kernels, they do not use CuPy's bfloat16 API."""
    a = np.ascontiguousarray(a)
    return sim.ndarray._wrap(a.copy()) if a.dtype == BF16 else sim.asarray(a)


def random_configs(count, seed, pool=False):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p_hi = (k[0] // 2 + 1, k[1] // 2 + 1) if pool else (3, 3)
        cfg = dict(
            shape=(
                int(rng.integers(1, 3)),
                int(rng.integers(1, 4)),
                int(rng.integers(3, 10)),
                int(rng.integers(3, 10)),
            ),
            k=k,
            s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            p=(int(rng.integers(0, p_hi[0])), int(rng.integers(0, p_hi[1]))),
            d=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
            ceil_mode=bool(rng.integers(0, 2)),
        )
        H, W = cfg["shape"][2:]
        if all(
            size + 2 * cfg["p"][i] >= cfg["d"][i] * (cfg["k"][i] - 1) + 1
            for i, size in enumerate((H, W))
        ):
            out.append(cfg)
    return out


def wargs(cfg):
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = cfg["k"], cfg["s"], cfg["p"], cfg["d"]
    return kh, kw, sy, sx, ph, pw, dy, dx


CONV_CFGS = random_configs(10, seed=11)
POOL_CFGS = random_configs(10, seed=12, pool=True)
DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------- part 1: kernels on the host


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float", "double"])
@pytest.mark.parametrize("cfg", CONV_CFGS)
def test_im2col_and_col2im_kernels(modules, cfg, dtype, grid):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    geo = K.window_geo(x.shape, *wargs(cfg))
    # The GPU's columns are (C, kh, kw, N, OH, OW): the GEMM's (C kh kw, N OH OW) matrix.
    expected = np.ascontiguousarray(cpu.im2col(x, geo).transpose(1, 2, 3, 0, 4, 5))

    col = np.full(expected.shape, np.nan, dtype=dtype)
    threads = geo.C * geo.N * geo.OH * geo.OW  # one per (channel, image, output pixel)
    _, col = run_kernel(modules, "conv.cu", "im2col", dtype, (x, col), threads, geo, grid)
    np.testing.assert_array_equal(col, expected)

    c = rng.standard_normal(expected.shape).astype(dtype)
    img = np.full(x.shape, np.nan, dtype=dtype)
    _, img = run_kernel(modules, "conv.cu", "col2im", dtype, (c, img), img.size, geo, grid)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    want = cpu.col2im(np.ascontiguousarray(c.transpose(3, 0, 1, 2, 4, 5)), geo)
    np.testing.assert_allclose(img, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float", "double"])
@pytest.mark.parametrize("cfg", POOL_CFGS)
def test_max_pool_kernels(modules, cfg, dtype, grid):
    rng = np.random.default_rng(1)
    # Small integers: plenty of ties, which must resolve to the first maximum as on the CPU.
    x = rng.integers(-3, 4, size=cfg["shape"]).astype(dtype)
    x.reshape(-1)[::7] = np.nan
    geo = K.pool_geo(x.shape, *wargs(cfg), ceil_mode=cfg["ceil_mode"])
    y_ref, am_ref = cpu.max_pool2d_forward(x, geo)
    ints = geo.launch_ints()

    y = np.zeros(y_ref.shape, dtype=dtype)
    am = np.full(y_ref.shape, -7, dtype=np.int32)
    _, y, am = run_kernel(
        modules, "pool.cu", "max_pool2d_forward", dtype, (x, y, am), y.size, ints, grid
    )
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = np.full(x.shape, np.nan, dtype=dtype)
    _, _, gx = run_kernel(
        modules, "pool.cu", "max_pool2d_backward", dtype, (gy, am, gx), gx.size, ints, grid
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    expected = cpu.max_pool2d_backward(gy, am_ref, geo)
    np.testing.assert_allclose(gx, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("count_include_pad", [1, 0])
@pytest.mark.parametrize("cfg", POOL_CFGS)
def test_avg_pool_kernels(modules, cfg, count_include_pad, grid):
    dtype = np.float64
    rng = np.random.default_rng(2)
    x = rng.standard_normal(cfg["shape"])
    kh, kw, sy, sx, ph, pw, _, _ = wargs(cfg)
    for ceil_mode, override in ((False, None), (cfg["ceil_mode"], None), (True, 3)):
        geo = geometry.pool2d(
            x.shape, (kh, kw), (sy, sx), (ph, pw), 1, ceil_mode, bool(count_include_pad), override
        )
        y_ref = cpu.avg_pool2d_forward(x, geo)
        ints = (*geo.launch_ints(), count_include_pad, geo.divisor_override)

        y = np.full(y_ref.shape, np.nan)
        _, y = run_kernel(
            modules, "pool.cu", "avg_pool2d_forward", dtype, (x, y), y.size, ints, grid
        )
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)

        gy = rng.standard_normal(y.shape)
        gx = np.full(x.shape, np.nan)
        _, gx = run_kernel(
            modules, "pool.cu", "avg_pool2d_backward", dtype, (gy, gx), gx.size, ints, grid
        )
        expected = cpu.avg_pool2d_backward(gy, geo)
        np.testing.assert_allclose(gx, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- float16 and bfloat16 kernels


def close_to_rounded(got, want32, dtype, what):
    """``got`` (dtype) is the float32 result ``want32`` rounded once: within one unit roundoff
    (two for slack on float32 sums taken in another order), subnormals within their spacing."""
    assert got.dtype == np.dtype(dtype), what
    u = UNIT[np.dtype(dtype)]
    tiny = float(np.finfo(np.float16).smallest_subnormal) if dtype == np.float16 else 0.0
    np.testing.assert_allclose(
        got.astype(np.float32), want32, rtol=2 * u, atol=tiny + 1e-30, err_msg=what
    )


@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
@pytest.mark.parametrize("cfg", CONV_CFGS[:6])
def test_im2col_and_col2im_kernels_in_low_precision(modules, cfg, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    geo = K.window_geo(x.shape, *wargs(cfg))
    x32 = x.astype(np.float32)
    expected = np.ascontiguousarray(cpu.im2col(x32, geo).transpose(1, 2, 3, 0, 4, 5))
    col = np.zeros(expected.shape, dtype=dtype)
    threads = geo.C * geo.N * geo.OH * geo.OW
    _, col = run_kernel(modules, "conv.cu", "im2col", dtype, (x, col), threads, geo, GRIDS[1])
    np.testing.assert_array_equal(col.astype(np.float32), expected)  # a copy: exact

    c = rng.standard_normal(expected.shape).astype(dtype)
    img = np.zeros(x.shape, dtype=dtype)
    _, img = run_kernel(modules, "conv.cu", "col2im", dtype, (c, img), img.size, geo, GRIDS[2])
    c32 = np.ascontiguousarray(c.astype(np.float32).transpose(3, 0, 1, 2, 4, 5))
    close_to_rounded(img, cpu.col2im(c32, geo), dtype, f"col2im {cfg}")


@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
@pytest.mark.parametrize("cfg", POOL_CFGS[:6])
def test_pool_kernels_in_low_precision(modules, cfg, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    x32 = x.astype(np.float32)
    geo = K.pool_geo(x.shape, *wargs(cfg), ceil_mode=cfg["ceil_mode"])
    y_ref, am_ref = cpu.max_pool2d_forward(x32, geo)
    ints = geo.launch_ints()
    y = np.zeros(y_ref.shape, dtype=dtype)
    am = np.full(y_ref.shape, -7, dtype=np.int32)
    grid = GRIDS[2]
    _, y, am = run_kernel(modules, "pool.cu", "max_pool2d_forward", dtype, (x, y, am), y.size,
                          ints, grid)  # fmt: skip
    np.testing.assert_array_equal(y.astype(np.float32), y_ref)  # a maximum is exact
    np.testing.assert_array_equal(am, am_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = np.zeros(x.shape, dtype=dtype)
    _, _, gx = run_kernel(modules, "pool.cu", "max_pool2d_backward", dtype, (gy, am, gx),
                          gx.size, ints, grid)  # fmt: skip
    want = cpu.max_pool2d_backward(gy.astype(np.float32), am_ref, geo)
    close_to_rounded(gx, want, dtype, "max_pool2d_backward")

    kh, kw, sy, sx, ph, pw, _, _ = wargs(cfg)
    geo = geometry.pool2d(x.shape, (kh, kw), (sy, sx), (ph, pw), 1, cfg["ceil_mode"], False)
    ints = (*geo.launch_ints(), 0, geo.divisor_override)
    y = np.zeros(geo.y_shape, dtype=dtype)
    _, y = run_kernel(modules, "pool.cu", "avg_pool2d_forward", dtype, (x, y), y.size, ints, grid)
    close_to_rounded(y, cpu.avg_pool2d_forward(x32, geo), dtype, "avg_pool2d_forward")
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = np.zeros(x.shape, dtype=dtype)
    _, gx = run_kernel(modules, "pool.cu", "avg_pool2d_backward", dtype, (gy, gx), gx.size,
                       ints, grid)  # fmt: skip
    want = cpu.avg_pool2d_backward(gy.astype(np.float32), geo)
    close_to_rounded(gx, want, dtype, "avg_pool2d_backward")


@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
def test_low_precision_sums_are_formed_in_float32(modules, dtype):
    """1024 + 1/2 + 1/2: summed in float16 each 1/2 is lost (a tie, rounded to the even 1024);
    in float32 the sum is 1025, which float16 holds. (bfloat16: 256 + 1 + 1 -> 258.)"""
    big, small = (1024.0, 0.5) if dtype == np.float16 else (256.0, 1.0)
    # col2im over a 1x3 window, padding 2: image pixel 0 gathers window entries kx = 0, 1, 2.
    geo = K.window_geo((1, 1, 1, 3), 1, 3, 1, 1, 0, 2, 1, 1)
    c = np.zeros((1, 1, 3, 1, 1, geo.OW), dtype=dtype)
    for kx, v in enumerate((big, small, small)):
        c[0, 0, kx, 0, 0, 2 - kx] = v  # window entry kx of output column ow = 2 - kx: pixel 0
    img = np.zeros((1, 1, 1, 3), dtype=dtype)
    _, img = run_kernel(modules, "conv.cu", "col2im", dtype, (c, img), img.size, geo, (1, 1))
    want32 = cpu.col2im(np.ascontiguousarray(c.astype(np.float32).transpose(3, 0, 1, 2, 4, 5)),
                        geo)  # fmt: skip
    assert float(img[0, 0, 0, 0]) == float(want32[0, 0, 0, 0]) == big + 2 * small
    # avg pooling: one window over [big, small, small], divisor 1.
    x = np.array([[[[big, small, small]]]], dtype=dtype)
    geo = geometry.pool2d(x.shape, (1, 3), 1, 0, 1, False, True, 1)
    y = np.zeros(geo.y_shape, dtype=dtype)
    ints = (*geo.launch_ints(), 1, 1)
    _, y = run_kernel(modules, "pool.cu", "avg_pool2d_forward", dtype, (x, y), 1, ints, (1, 1))
    assert float(y[0, 0, 0, 0]) == big + 2 * small


def test_avg_pool_divisors_match_torch():
    # Geometry.avg_divisors (and pool.cu's avg_pool_divisor, held to it above) is PyTorch's rule.
    torch = pytest.importorskip("torch")
    x = np.ones((1, 1, 7, 6))
    for ceil_mode in (False, True):
        for cip in (False, True):
            geo = geometry.pool2d(x.shape, 3, 2, 1, 1, ceil_mode, cip)
            want = torch.nn.functional.avg_pool2d(
                torch.ones(1, 1, 7, 6), 3, 2, 1, ceil_mode, cip
            ).numpy()
            y = cpu.avg_pool2d_forward(x, geo)
            np.testing.assert_allclose(y, want, rtol=1e-6)


def test_kernel_parameters_are_the_geometry_launch_fields():
    # Every conv/pool kernel takes the geometry's integers by name, in LAUNCH_FIELDS order.
    for src in SOURCES:
        code = launch.source_code(src)
        for name in launch.KERNELS[src]:
            sig = hostbuild.signature(code, f"{name}<float, float>")
            ints = [p.name for p in sig.params if p.ctype == "int" and not p.pointer]
            assert tuple(ints[: len(geometry.LAUNCH_FIELDS)]) == geometry.LAUNCH_FIELDS, name


def test_max_pool_kernel_window_in_padding(modules):
    # No pixel in the window: -inf and argmax -1, as kernels.cpu gives.
    x = np.ones((1, 1, 3, 3), np.float32)
    y = np.zeros((1, 1, 1, 1), np.float32)
    am = np.zeros((1, 1, 1, 1), np.int32)
    ints = K.pool_geo(x.shape, 2, 2, 1, 1, 1, 1, 4, 4)
    _, y, am = run_kernel(
        modules, "pool.cu", "max_pool2d_forward", np.float32, (x, y, am), 1, ints, (1, 32)
    )
    assert y[0, 0, 0, 0] == -np.inf and am[0, 0, 0, 0] == -1


def test_every_kernel_is_covered(modules):
    # A kernel added to a .cu file must be added to kernels.launch.KERNELS (and tested here).
    for src in SOURCES:
        found = set(hostbuild.find_kernels(launch.source_code(src)))
        assert found == set(launch.KERNELS[src]), src
    tested = {
        "im2col",
        "col2im",
        "max_pool2d_forward",
        "max_pool2d_backward",
        "avg_pool2d_forward",
        "avg_pool2d_backward",
    }
    assert tested == {k for src in SOURCES for k in launch.KERNELS[src]}


# ---------------------------------------------------------------- part 2: kernels.gpu end to end


@pytest.fixture(scope="module")
def cupy():
    """The suite's cupy: the stand-in (installed by conftest) or real CuPy on a GPU."""
    cp = pytest.importorskip("cupy")
    if not getattr(cp, "IS_CUDA_SIM", False):
        try:
            if cp.cuda.runtime.getDeviceCount() < 1:
                pytest.skip("CuPy sees no GPU")
        except Exception as exc:  # no driver
            pytest.skip(f"CuPy is not usable: {exc}")
    return cp


GROUP_CFGS = [
    dict(x=(2, 4, 7, 6), w=(6, 2, 3, 3), s=1, p=1, d=1, g=2),
    dict(x=(1, 3, 9, 8), w=(3, 1, 2, 3), s=(2, 3), p=(0, 2), d=(2, 1), g=3),
    dict(x=(2, 2, 5, 5), w=(4, 2, 1, 1), s=2, p=0, d=1, g=1),
    dict(x=(2, 3, 6, 7), w=(5, 3, 3, 2), s=1, p=(2, 0), d=(1, 2), g=1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cfg", GROUP_CFGS)
def test_gpu_conv2d_matches_cpu(cupy, cfg, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = rng.standard_normal(cfg["w"][0]).astype(dtype)
    args = (cfg["s"], cfg["p"], cfg["d"], cfg["g"])
    y = K.conv2d_forward(x, w, b, *args)
    gy = rng.standard_normal(y.shape).astype(dtype)
    X, Wd, B, GY = (cupy.asarray(a) for a in (x, w, b, gy))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    Y = K.conv2d_forward(X, Wd, B, *args, kern=gpu)
    assert isinstance(Y, cupy.ndarray) and Y.dtype == dtype
    np.testing.assert_allclose(cupy.asnumpy(Y), y, **tol)
    np.testing.assert_allclose(
        cupy.asnumpy(K.conv2d_backward_input(GY, Wd, x.shape, *args, kern=gpu)),
        K.conv2d_backward_input(gy, w, x.shape, *args),
        **tol,
    )
    np.testing.assert_allclose(
        cupy.asnumpy(K.conv2d_backward_weight(GY, X, w.shape, *args, kern=gpu)),
        K.conv2d_backward_weight(gy, x, w.shape, *args),
        **tol,
    )


@pytest.mark.parametrize("cfg", POOL_CFGS[:5])
def test_gpu_pooling_matches_cpu(cupy, cfg):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(cfg["shape"]).astype(np.float32)
    X = cupy.asarray(x)[:, :, ::-1]  # non-contiguous input: kernels.gpu must copy it
    x = np.ascontiguousarray(x[:, :, ::-1])
    wa = wargs(cfg)
    y, am = K.max_pool2d_forward(x, *wa, ceil_mode=cfg["ceil_mode"])
    Y, AM = K.max_pool2d_forward(X, *wa, ceil_mode=cfg["ceil_mode"], kern=gpu)
    np.testing.assert_array_equal(cupy.asnumpy(Y), y)
    np.testing.assert_array_equal(cupy.asnumpy(AM), am)
    np.testing.assert_array_equal(
        cupy.asnumpy(K.max_pool2d_indices(AM, x.shape, *wa, xp=cupy)),
        K.max_pool2d_indices(am, x.shape, *wa),
    )
    gy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(
        cupy.asnumpy(K.max_pool2d_backward(cupy.asarray(gy), AM, x.shape, *wa, kern=gpu)),
        K.max_pool2d_backward(gy, am, x.shape, *wa),
        rtol=1e-5,
        atol=1e-6,
    )
    kh, kw, sy, sx, ph, pw, _, _ = wa
    for cip in (True, False):
        ya = K.avg_pool2d_forward(x, kh, kw, sy, sx, ph, pw, cip)
        np.testing.assert_allclose(
            cupy.asnumpy(K.avg_pool2d_forward(X, kh, kw, sy, sx, ph, pw, cip, kern=gpu)),
            ya,
            rtol=1e-5,
            atol=1e-6,
        )
        ga = rng.standard_normal(ya.shape).astype(np.float32)
        np.testing.assert_allclose(
            cupy.asnumpy(
                K.avg_pool2d_backward(
                    cupy.asarray(ga), x.shape, kh, kw, sy, sx, ph, pw, cip, kern=gpu
                )
            ),
            K.avg_pool2d_backward(ga, x.shape, kh, kw, sy, sx, ph, pw, cip),
            rtol=1e-5,
            atol=1e-6,
        )


def test_gpu_rejects_unsupported_dtype(cupy):
    with pytest.raises(TypeError, match="int32"):
        K.max_pool2d_forward(cupy.zeros((1, 1, 4, 4), dtype=np.int32), 2, 2, 2, 2, 0, 0, kern=gpu)
