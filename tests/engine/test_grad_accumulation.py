"""Additions into an existing ``.grad`` on cuda wait for the end of the backward and run as one
kernel per (device, dtype) (kernels/cuda/grad.cu, issue 12): the sums equal the cpu's, hooks and
retain_grad still see what they saw, and a GAN-like reuse of parameters costs one launch."""

from __future__ import annotations

import cuda_sim
import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

import engine
from kernels import grad_gpu, launch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_multi_kernel_matches_numpy(dtype):
    module = hostbuild.build(launch.CUDA_DIR / "grad.cu", launch.name_expressions("grad.cu"))
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (0,), (1,), (257,), (2, 3, 5)]
    a = [rng.standard_normal(s).astype(dtype) for s in shapes]
    b = [rng.standard_normal(s).astype(dtype) for s in shapes]
    outs = [sim.empty(s, dtype) for s in shapes]
    da, db = [sim.asarray(x) for x in a], [sim.asarray(x) for x in b]
    offsets = np.cumsum([0] + [x.size for x in a]).astype(np.int64)
    tables = [sim.asarray(np.array([x.data.ptr for x in xs], np.uint64)) for xs in (da, db, outs)]
    fn = module.get_function(f"add_multi<{'float' if dtype == np.float32 else 'double'}>")
    for grid in ((1,), (launch.blocks(int(offsets[-1])),)):
        args = (*tables, sim.asarray(offsets), np.int64(offsets[-1]), np.int32(len(a)))
        fn(grid, (32,), args)
        for o, x, y in zip(outs, a, b, strict=True):
            np.testing.assert_array_equal(o.get(), x + y)


def _cuda():
    if not engine.cuda.is_available():
        pytest.skip("needs cuda (the CuPy stand-in in CI)")
    return "cuda"


def _gan_like(device, hooks=False):
    """Two parameters reused by three uses over two backward calls (a GAN discriminator)."""
    rng = np.random.default_rng(1)
    w = engine.tensor(rng.standard_normal((4, 3)), device=device, requires_grad=True)
    b = engine.tensor(rng.standard_normal(3), device=device, requires_grad=True)
    seen = []
    if hooks:
        w.register_hook(lambda g: g * 2)
        b.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.cpu().numpy()))
    xs = [engine.tensor(rng.standard_normal((5, 4)), device=device) for _ in range(3)]
    loss = (xs[0] @ w + b).tanh().sum() + ((xs[1] @ w + b) ** 2).sum()
    loss.backward()
    ((xs[2] @ w + b).sigmoid().sum()).backward()
    return [w.grad.cpu().numpy(), b.grad.cpu().numpy()] + seen


@pytest.mark.parametrize("hooks", [False, True])
def test_accumulated_grads_equal_the_cpu(hooks):
    cuda = _cuda()
    for got, want in zip(_gan_like(cuda, hooks), _gan_like("cpu", hooks), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_retain_grad_and_grads_of_different_dtypes_on_one_backward():
    cuda = _cuda()
    out = []
    for device in ("cpu", cuda):
        w64 = engine.tensor(np.arange(3.0), device=device, requires_grad=True)
        w32 = engine.tensor(np.arange(3, dtype=np.float32), device=device, requires_grad=True)
        h = w64 * 2
        h.retain_grad()
        y = (h * h).sum() + (h * 3).sum() + (w32 * w32).sum() + (w32 * 5).sum()
        y.backward()
        out.append([t.grad.cpu().numpy() for t in (w64, w32, h)])
        assert w32.grad.dtype == np.float32
    for got, want in zip(*out, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_one_launch_adds_every_reused_parameter():
    _cuda()
    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in")
    from cuda_sim import counters

    ws = [engine.randn(3, 3, device="cuda", requires_grad=True) for _ in range(4)]
    for w in ws:
        w.grad = engine.ones(3, 3, device="cuda")
    with counters.count() as c:
        sum((w * 1.0).sum() for w in ws).backward()
    assert c.launch_kinds["RawKernel"] == 1, dict(c.launch_sites)
    for w in ws:
        np.testing.assert_allclose(w.grad.cpu().numpy(), 2.0)


def test_add_multi_refuses_mismatched_pairs():
    _cuda()
    cp = launch._cupy()
    a = [cp.zeros((2, 2), np.float32), cp.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="pair 1"):
        grad_gpu.add_multi(a, [cp.zeros((2, 2), np.float32), cp.zeros(3, np.float64)])
    with pytest.raises(ValueError, match="pair 0"):
        grad_gpu.add_multi(a[:1], [cp.zeros((2, 2), np.float32).T[:, :1].reshape(2)[None]])


def test_the_implicit_ones_gradient_is_shared_on_cuda_but_never_handed_out():
    """A scalar's implicit gradient on cuda is one cached array (no fill kernel per backward);
    grad() and .grad get copies of it, so writing them leaves the next backward right."""
    _cuda()
    x = engine.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    loss = (x * x).sum()
    (g,) = engine.grad(loss, (loss,), retain_graph=True)
    g.array[...] = 5.0
    loss.retain_grad()
    loss.backward()
    loss.grad.array[...] = 7.0
    y = (x * 3).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), [2.0 + 3.0, 4.0 + 3.0])
    (gy,) = engine.grad((x * 3).sum(), (x,))
    np.testing.assert_allclose(gy.cpu().numpy(), [3.0, 3.0])


def test_create_graph_never_stores_the_shared_ones_as_a_grad():
    """With create_graph=True the walk stores gradients as they are (their graph kept): a
    scalar leaf or retained root gets a copy of the cached ones, so writing its .grad leaves
    the next backward's implicit gradient 1."""
    _cuda()
    x = engine.tensor(3.0, device="cuda", requires_grad=True)
    x.backward(create_graph=True)
    x.grad.array[...] = 9.0
    s = (engine.tensor([1.0, 2.0], device="cuda", requires_grad=True) ** 2).sum()
    s.retain_grad()
    s.backward(create_graph=True)
    s.grad.array[...] = 5.0
    w = engine.tensor(2.0, device="cuda", requires_grad=True)
    (w * w).backward()
    np.testing.assert_allclose(w.grad.cpu().numpy(), 4.0)


def test_a_hook_on_another_tensor_reads_the_grad_as_the_cpu_does():
    """w's accumulation comes before u's hook in the walk (w's use is of a later generation):
    the hook reads w.grad already summed on both devices, not a sum deferred past it."""
    seen = {}
    for device in ("cpu", _cuda()):
        w = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
        w.grad = engine.tensor([10.0, 10.0], device=device)
        v, v2 = (engine.ones(2, device=device, requires_grad=True) for _ in range(2))
        y = (v * 1.0 * 1.0 * 1.0 * 1.0 * w).sum()
        u = v2 * 1.0
        u.register_hook(lambda g, w=w, d=device: seen.setdefault(d, w.grad.cpu().numpy().copy()))
        ((u * u).sum() + y).backward()
    np.testing.assert_array_equal(seen["cuda"], seen["cpu"])
    np.testing.assert_array_equal(seen["cpu"], [11.0, 11.0])


def test_an_error_mid_walk_leaves_the_grads_as_the_cpu_does():
    """A backward that raises after w's accumulation (w's use is of a later generation than
    the failing op): w.grad holds that addition on both devices, not a sum deferred and lost."""

    class Boom(engine.autograd.Function):
        def forward(self, x):
            return x.copy()

        def backward(self, gy):
            raise ValueError("boom")

    got = {}
    for device in ("cpu", _cuda()):
        w = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
        v = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
        w.grad = engine.tensor([10.0, 10.0], device=device)
        loss = (v * 1.0 * 1.0 * 1.0 * w).sum() + Boom()(v).sum()
        with pytest.raises(ValueError, match="boom"):
            loss.backward()
        got[device] = w.grad.cpu().numpy()
    np.testing.assert_array_equal(got["cuda"], got["cpu"])
    np.testing.assert_array_equal(got["cpu"], [11.0, 12.0])
