"""The activation kernels of ``kernels/cuda/activation.cu`` against NumPy (float and double,
three grids; float16 and bfloat16 against the float32 computation rounded once), then ReLU /
LeakyReLU / tanh / sigmoid on cuda against the cpu, first and second derivatives, and in float16
on cuda: one launch each way, the float32 values rounded once."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

import engine
import engine.functional as F
from kernels import launch

SOURCE = "activation.cu"
BF16 = np.dtype(ml_dtypes.bfloat16)
LOW = [np.dtype(np.float16), BF16]
CTYPE = {t: launch.template_args(SOURCE, np.dtype(t).name) for t in (np.float32, np.float64)}
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]


@pytest.fixture(scope="module")
def module():
    return hostbuild.build(launch.CUDA_DIR / SOURCE, launch.name_expressions(SOURCE))


def _grid(grid, total):
    blocks, threads = grid
    return (blocks or launch.blocks(total),), (threads,)


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_kernels(module, dtype, grid, slope):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1001).astype(dtype)
    x[:3] = 0
    gy = rng.standard_normal(1001).astype(dtype)
    c, n = CTYPE[dtype], np.int64(x.size)
    y = sim.empty(x.shape, dtype)
    fwd = module.get_function(f"leaky_relu_forward<{c}>")
    fwd(*_grid(grid, x.size), (sim.asarray(x), y, n, dtype(slope)))
    want_y = np.where(x > 0, x, dtype(slope) * x)
    np.testing.assert_array_equal(y.get(), want_y)
    gx = sim.empty(x.shape, dtype)
    bwd = module.get_function(f"leaky_relu_backward<{c}>")
    bwd(*_grid(grid, x.size), (y, sim.asarray(gy), gx, n, dtype(slope)))
    np.testing.assert_array_equal(gx.get(), np.where(x > 0, gy, dtype(slope) * gy))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_kernels(module, dtype, grid):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(1001) * 4).astype(dtype)
    x[:4] = [0, 100, -100, -1000]  # saturated ends: exp(-x) = inf gives 0
    gy = rng.standard_normal(1001).astype(dtype)
    c, n = CTYPE[dtype], np.int64(x.size)
    with np.errstate(over="ignore"):
        want_s = (1 / (1 + np.exp(-x))).astype(dtype)
    s = sim.empty(x.shape, dtype)
    module.get_function(f"sigmoid_forward<{c}>")(*_grid(grid, x.size), (sim.asarray(x), s, n))
    np.testing.assert_allclose(s.get(), want_s, rtol=4 * np.finfo(dtype).eps, atol=0)
    t = np.tanh(x)
    for name, y, want in (
        ("tanh_backward", t, gy * (1 - t * t)),
        ("sigmoid_backward", want_s, gy * want_s * (1 - want_s)),
    ):
        gx = sim.empty(x.shape, dtype)
        fn = module.get_function(f"{name}<{c}>")
        fn(*_grid(grid, x.size), (sim.asarray(y), sim.asarray(gy), gx, n))
        np.testing.assert_allclose(gx.get(), want, rtol=4 * np.finfo(dtype).eps, atol=0)


def splitmix_uniform(key: int, positions: np.ndarray) -> np.ndarray:
    """The dropout kernel's numbers: 24-bit floats of splitmix64 at the given positions."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (positions.astype(np.uint64) + np.uint64(1)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1 / 16777216)


@pytest.mark.parametrize("p", [0.1, 0.5, 1 / 3])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_kernel(module, dtype, grid, p):
    from kernels.activation_gpu import _halves

    rng = np.random.default_rng(4)
    a = rng.standard_normal(1001).astype(dtype)
    key, offset = 0xDEADBEEF12345678, 2**33 + 5  # halves >= 2**31: the signed-int packing
    u = splitmix_uniform(key, offset + np.arange(a.size))
    scale = dtype(1 / (1 - p))
    out = sim.empty(a.shape, dtype)
    fn = module.get_function(f"dropout_apply<{CTYPE[dtype]}>")
    ints = tuple(np.int32(h) for h in (*_halves(key), *_halves(offset)))
    fn(*_grid(grid, a.size), (sim.asarray(a), out, np.int64(a.size), *ints,
                              dtype(np.float32(p)), scale))  # fmt: skip
    want = a * np.where(u >= np.float32(p), scale, dtype(0))
    np.testing.assert_array_equal(out.get(), want)
    assert abs((u >= p).mean() - (1 - p)) < 0.06


# ---------------------------------------------------------------- float16 and bfloat16 kernels
def _dev(a):
    """A stand-in device copy of ``a``; bfloat16 wrapped directly (the stand-in's cupy.asarray
    refuses it: these tests launch kernels, they use no CuPy bfloat16 routine)."""
    return sim.ndarray._wrap(a.copy()) if a.dtype == BF16 else sim.asarray(a)


def _low_inputs(dtype, seed, n=4001):
    """x and gy of ``dtype`` (normal, times 4, with zeros, saturating and tiny values), and
    their float32 values (exact)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[:6] = [0, -0.0, 20, -20, 1e-3, -1e-3]
    gy = rng.standard_normal(n).astype(np.float32)
    x, gy = x.astype(dtype), gy.astype(dtype)
    return x, gy, x.astype(np.float32), gy.astype(np.float32)


def _run(module, name, dtype, arrays, n, scalars=()):
    """Kernel ``name`` of ``dtype`` over ``arrays`` (host, then one output): the output, host."""
    out = sim.empty(arrays[0].shape, dtype)
    fn = module.get_function(f"{name}<{launch.template_args(SOURCE, dtype.name)}>")
    fn(*_grid((3, 32), n), (*(_dev(a) for a in arrays), out, np.int64(n), *scalars))
    return out.get()


@pytest.mark.parametrize("slope", [0.0, 0.2, 0.01])
@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
def test_low_precision_leaky_relu_is_float32_rounded_once(module, dtype, slope):
    """float16/bfloat16 in, float32 compute (the slope a float32, not rounded to the storage
    type: 0.2 is not a float16), one rounding out: bit for bit NumPy's float32 result cast."""
    x, gy, x32, gy32 = _low_inputs(dtype, 5)
    s32 = np.float32(slope)
    y = _run(module, "leaky_relu_forward", dtype, (x,), x.size, (s32,))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.where(x32 > 0, x32, s32 * x32).astype(dtype))
    gx = _run(module, "leaky_relu_backward", dtype, (y, gy), x.size, (s32,))
    np.testing.assert_array_equal(gx, np.where(x32 > 0, gy32, s32 * gy32).astype(dtype))
    if slope == 0.2:  # a float16/bfloat16 slope (the CuPy ops these replace) rounds twice
        twice = (x * dtype.type(slope)).astype(dtype)
        assert (np.where(x32 > 0, x, twice) != y).any()


@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
def test_low_precision_tanh_and_sigmoid_are_float32_rounded_once(module, dtype):
    x, gy, x32, gy32 = _low_inputs(dtype, 6)
    with np.errstate(over="ignore"):
        s32 = 1 / (1 + np.exp(-x32))
    s = _run(module, "sigmoid_forward", dtype, (x,), x.size)
    # The host's expf and NumPy's float32 exp may differ in the last float32 bit: the result is
    # the rounding of a float32 within 2 ulp of NumPy's (almost always NumPy's own rounding).
    eps = np.finfo(np.float32).eps
    lo = (s32 * np.float32(1 - 2 * eps)).astype(dtype)
    hi = (s32 * np.float32(1 + 2 * eps)).astype(dtype)
    assert ((lo <= s) & (s <= hi)).all()
    assert (s == s32.astype(dtype)).mean() > 0.999
    t32 = np.tanh(x32).astype(dtype).astype(np.float32)  # a float16 tanh output
    s16 = s.astype(np.float32)
    for name, y, want in (
        ("tanh_backward", t32, gy32 * (np.float32(1) - t32 * t32)),
        ("sigmoid_backward", s16, gy32 * s16 * (np.float32(1) - s16)),
    ):
        gx = _run(module, name, dtype, (y.astype(dtype), gy), x.size)
        np.testing.assert_array_equal(gx, want.astype(dtype), err_msg=name)


@pytest.mark.parametrize("p", [0.1, 1 / 3])
@pytest.mark.parametrize("dtype", LOW, ids=["half", "bfloat16"])
def test_low_precision_dropout_scales_in_float32(module, dtype, p):
    """The kept elements times float32(1 / (1 - p)), rounded once (1 / (1 - 1/3) = 1.5 is exact
    in both; 1 / 0.9 is not: a float16 scale would round twice)."""
    from kernels.activation_gpu import _halves, dropout_scale

    a, _, a32, _ = _low_inputs(dtype, 7)
    key, offset = 0x0123456789ABCDEF, 17
    u = splitmix_uniform(key, offset + np.arange(a.size))
    scale = dropout_scale(p, dtype)
    assert scale == float(np.float32(1 / (1 - p)))
    ints = tuple(np.int32(h) for h in (*_halves(key), *_halves(offset)))
    out = _run(module, "dropout_apply", dtype, (a,), a.size,
               (*ints, np.float32(p), np.float32(scale)))  # fmt: skip
    want = a32 * np.where(u >= np.float32(p), np.float32(scale), np.float32(0))
    np.testing.assert_array_equal(out, want.astype(dtype))


def test_low_precision_kernels_take_float32_scalars(module):
    """The <T, A> signature: a float16 slope is refused (on a GPU: 16 bits read as a float)."""
    x = np.ones(4, np.float16)
    with pytest.raises(hostbuild.KernelArgumentError):
        _run(module, "leaky_relu_forward", np.dtype(np.float16), (x,), 4, (np.float16(0.2),))


def derivatives(fn, x, device):
    """fn(x), the gradient of sum(fn(x)^2) made with create_graph, the gradient of
    sum(that gradient * x) (a second derivative) and the gradient of sum(3 fn(x)), on ``device``."""
    xt = engine.tensor(x, device=device, requires_grad=True)
    y = fn(xt)
    (gx,) = engine.autograd.grad((y * y).sum(), (xt,), create_graph=True)
    (gx * xt).sum().backward()
    xt2 = engine.tensor(x, device=device, requires_grad=True)
    (fn(xt2) * 3).sum().backward()
    return [y.numpy(), gx.detach().numpy(), xt.grad.numpy(), xt2.grad.numpy()]


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_tanh_and_sigmoid_on_cuda_match_the_cpu_to_the_second_derivative(cuda, act):
    x = np.random.default_rng(3).standard_normal((5, 7)) * 3
    fn = getattr(engine, act)
    for a, b in zip(derivatives(fn, x, "cpu"), derivatives(fn, x, cuda), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.fixture
def cuda():
    if not engine.cuda.is_available():
        pytest.skip("needs cuda (the CuPy stand-in in CI)")
    return "cuda"


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_activations_on_cuda_match_the_cpu_to_the_second_derivative(cuda, act):
    x = np.random.default_rng(1).standard_normal((5, 7))
    x[0, :3] = 0
    fn = F.relu if act == "relu" else (lambda t: F.leaky_relu(t, 0.2))
    for a, b in zip(derivatives(fn, x, "cpu"), derivatives(fn, x, cuda), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- float16 on cuda, end to end
def _counted(fn):
    """fn()'s result and the launches it made (the stand-in's counters)."""
    from cuda_sim import counters

    with counters.count() as c:
        out = fn()
    return out, c


ACTS = {
    "relu": (F.relu, lambda x: np.maximum(x, np.float32(0))),
    "leaky_relu": (
        lambda t: F.leaky_relu(t, 0.2),
        lambda x: np.where(x > 0, x, np.float32(0.2) * x),
    ),
    "tanh": (engine.tanh, None),  # forward: CuPy's tanh, one launch already
    "sigmoid": (engine.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
}


@pytest.mark.parametrize("act", list(ACTS))
def test_float16_activations_on_cuda_launch_once_each_way(cuda, act):
    """A float16 activation on cuda (as under 16-mixed) is one kernel forward and one backward
    (issue 14: LeakyReLU was three and four CuPy ops), its values the float32 computation on
    the float16 inputs rounded once to float16."""
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in")
    fn, ref = ACTS[act]
    rng = np.random.default_rng(8)
    x16 = (rng.standard_normal((6, 50)) * 3).astype(np.float16)
    x16[0, :3] = 0
    g16 = rng.standard_normal((6, 50)).astype(np.float16)
    x = engine.tensor(x16, device=cuda, requires_grad=True)
    gy = engine.tensor(g16, device=cuda)
    y, fwd = _counted(lambda: fn(x))
    assert y.dtype == np.float16 and fwd.launches == 1, dict(fwd.launch_sites)
    y16 = y.numpy()
    if ref is not None:
        with np.errstate(over="ignore"):
            want = ref(x16.astype(np.float32)).astype(np.float16)
        np.testing.assert_array_equal(y16, want)
    _, bwd = _counted(lambda: y.backward(gy))
    assert bwd.launch_kinds["RawKernel"] == 1 and bwd.launches == 1, dict(bwd.launch_sites)
    y32, g32 = y16.astype(np.float32), g16.astype(np.float32)
    want_gx = {
        "relu": np.where(y32 > 0, g32, np.float32(0) * g32),
        "leaky_relu": np.where(y32 > 0, g32, np.float32(0.2) * g32),
        "tanh": g32 * (np.float32(1) - y32 * y32),
        "sigmoid": g32 * y32 * (np.float32(1) - y32),
    }[act]
    assert x.grad.dtype == np.float16
    np.testing.assert_array_equal(x.grad.numpy(), want_gx.astype(np.float16))


def test_float16_dropout_on_cuda_is_one_kernel_each_way(cuda):
    """Dropout of float16 on cuda: the fused kernel each way, scaled by float32(1 / (1 - p))
    and rounded once (1 / 0.9 in float16 would round twice)."""
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in")
    p = 0.1
    rng = np.random.default_rng(9)
    x16 = (rng.standard_normal(2000) + 3).astype(np.float16)  # never 0: dropped is 0 exactly
    g16 = rng.standard_normal(2000).astype(np.float16)
    x = engine.tensor(x16, device=cuda, requires_grad=True)
    y, fwd = _counted(lambda: F.dropout(x, p))
    assert fwd.launch_kinds["RawKernel"] == 1 and fwd.launches == 1, dict(fwd.launch_sites)
    kept = y.numpy() != 0
    assert 0.85 < kept.mean() < 0.95
    scale = np.float32(1 / (1 - p))
    want = np.where(kept, x16.astype(np.float32) * scale, np.float32(0)).astype(np.float16)
    np.testing.assert_array_equal(y.numpy(), want)
    _, bwd = _counted(lambda: y.backward(engine.tensor(g16, device=cuda)))
    assert bwd.launch_kinds["RawKernel"] == 1 and bwd.launches == 1, dict(bwd.launch_sites)
    want_gx = np.where(kept, g16.astype(np.float32) * scale, np.float32(0)).astype(np.float16)
    np.testing.assert_array_equal(x.grad.numpy(), want_gx)


def test_bfloat16_activation_kernels_through_the_standin(cuda):
    """kernels.activation_gpu on bfloat16 device arrays (the bf16-mixed path; the stand-in
    has no bfloat16 engine tensors, so its arrays are wrapped): one kernel each, the float32
    values rounded once."""
    from kernels import activation_gpu as ag

    if not getattr(launch._cupy(), "IS_CUDA_SIM", False):
        pytest.skip("wraps host arrays as the CuPy stand-in's")
    x, gy, x32, gy32 = _low_inputs(BF16, 10, n=777)
    s = np.float32(0.2)
    y, c = _counted(lambda: ag.leaky_relu_forward(_dev(x), 0.2))
    assert c.launches == 1 and y.dtype == BF16
    np.testing.assert_array_equal(y.get(), np.where(x32 > 0, x32, s * x32).astype(BF16))
    gx = ag.leaky_relu_backward(y, _dev(gy), 0.2).get()
    np.testing.assert_array_equal(gx, np.where(x32 > 0, gy32, s * gy32).astype(BF16))
    t = np.tanh(x32).astype(BF16)
    t32 = t.astype(np.float32)
    gx = ag.tanh_backward(_dev(t), _dev(gy)).get()
    np.testing.assert_array_equal(gx, (gy32 * (np.float32(1) - t32 * t32)).astype(BF16))
    assert ag.supports(BF16) and ag.supports(np.float16) and not ag.supports(np.int32)
