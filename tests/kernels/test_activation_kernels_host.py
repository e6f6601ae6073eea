"""The activation kernels of ``kernels/cuda/activation.cu`` against NumPy (float and double,
three grids), then ReLU / LeakyReLU / tanh / sigmoid on cuda against the cpu, first and second
derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

import engine
import engine.functional as F
from kernels import launch

CTYPE = {np.float32: "float", np.float64: "double"}
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]


@pytest.fixture(scope="module")
def module():
    src = "activation.cu"
    return hostbuild.build(launch.CUDA_DIR / src, launch.name_expressions(src))


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
