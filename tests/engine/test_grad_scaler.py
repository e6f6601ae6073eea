"""engine.amp.GradScaler against torch.amp.GradScaler on the same sequence of gradients:
skipped steps (an injected inf/NaN) leave parameters and optimizer state unchanged, the scale
backs off, grows after growth_interval clean steps; unscale-then-clip equals clipping the float32
gradients; state_dict round trips. The inf check reads the host once per step."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import layers
import optimizers as optim
from engine.amp import GradScaler
from optimizers.utils import clip_grad_norm_

torch = pytest.importorskip("torch")

# Unscaled gradients of a (3,) and a (2, 2) parameter per step; inf/NaN at steps 2 and 5.
RNG = np.random.default_rng(0)
STEPS = [[RNG.standard_normal(3), RNG.standard_normal((2, 2))] for _ in range(9)]
STEPS[2][0][1] = np.inf
STEPS[5][1][0, 1] = np.nan


def _run(lib, device, clip=None):
    kw = dict(init_scale=2.0**4, growth_factor=2.0, backoff_factor=0.25, growth_interval=2)
    p0 = [np.linspace(-1, 1, 3), np.arange(4.0).reshape(2, 2)]
    if lib is engine:
        params = [layers.Parameter(engine.tensor(v, dtype="float32", device=device)) for v in p0]
        opt, scaler = optim.Adam(params, lr=0.1), GradScaler(**kw)
    else:
        params = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)) for v in p0]
        opt, scaler = torch.optim.Adam(params, lr=0.1), torch.amp.GradScaler("cpu", **kw)
    trace = []
    for grads in STEPS:
        scaler.scale(lib.ones(()))  # torch's scaler makes its scale tensor here
        s = scaler.get_scale()
        for p, g in zip(params, grads, strict=True):  # what scale(loss).backward() would give
            p.grad = lib.tensor(
                (g * s).astype(np.float32), **({"device": device} if lib is engine else {})
            )
        if clip is not None:
            scaler.unscale_(opt)
            (clip_grad_norm_ if lib is engine else torch.nn.utils.clip_grad_norm_)(params, clip)
        scaler.step(opt)
        scaler.update()
        state = opt.state_dict()["state"]
        steps = [float(np.asarray(state[i]["step"])) if i in state else 0 for i in range(2)]
        trace.append((scaler.get_scale(), [_np(p) for p in params], steps))
    return trace, scaler


def _np(t):
    return np.array(t.detach().to("cpu").numpy() if hasattr(t, "detach") else t, copy=True)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_grad_scaler_matches_torch_on_the_same_gradients(device, clip):
    ours, _ = _run(engine, device, clip)
    theirs, _ = _run(torch, device, clip)
    for i, ((s1, p1, st1), (s2, p2, st2)) in enumerate(zip(ours, theirs, strict=True)):
        assert s1 == s2, f"scale after step {i}"
        assert st1 == st2, f"optimizer step counts after step {i}"
        for a, b in zip(p1, p2, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
    # growth every 2 clean steps (x2), backoff x0.25 at the inf (step 2) and the NaN (step 5)
    assert [t[0] for t in ours] == [16, 32, 8, 8, 16, 4, 4, 8, 8]


def test_skipped_step_leaves_parameters_and_state_unchanged(device):
    trace, _ = _run(engine, device)
    (s1, p1, st1), (s2, p2, st2) = trace[1], trace[2]  # step 2 holds an inf
    assert s2 == s1 * 0.25 and st2 == st1
    for a, b in zip(p1, p2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unscale_then_clip_equals_clipping_float32_gradients(device):
    g = [np.array([3.0, -4.0, 12.0], np.float32), np.array([[1.0, 2.0]], np.float32)]
    a = [
        layers.Parameter(engine.zeros(3, device=device)),
        layers.Parameter(engine.zeros(1, 2, device=device)),
    ]
    b = [
        layers.Parameter(engine.zeros(3, device=device)),
        layers.Parameter(engine.zeros(1, 2, device=device)),
    ]
    scaler = GradScaler(init_scale=1024.0)
    for p, q, v in zip(a, b, g, strict=True):
        p.grad = engine.tensor(v * 1024.0, device=device)
        q.grad = engine.tensor(v, device=device)
    scaler.unscale_(optim.SGD(a, lr=1.0))
    n1, n2 = clip_grad_norm_(a, 1.0), clip_grad_norm_(b, 1.0)
    assert float(n1.item()) == pytest.approx(float(n2.item()))
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(_np(p.grad), _np(q.grad), rtol=1e-6)


def test_state_dict_round_trip_and_errors():
    s = GradScaler(init_scale=8.0, growth_interval=3)
    p = layers.Parameter(engine.ones(2))
    opt = optim.SGD([p], lr=0.1)
    p.grad = engine.ones(2)
    s.step(opt)
    s.update()
    sd = s.state_dict()
    assert sd == {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                  "growth_interval": 3, "_growth_tracker": 1}  # fmt: skip
    t = GradScaler()
    t.load_state_dict(sd)
    assert t.state_dict() == sd
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    assert GradScaler(enabled=False).state_dict() == {}
    assert GradScaler(enabled=False).scale(p) is p
    with pytest.raises(ValueError, match="backoff_factor"):
        GradScaler(backoff_factor=2.0)


def test_one_host_read_per_step(monkeypatch):
    """All gradients are checked by one reduction, read once by step()."""
    params = [layers.Parameter(engine.ones(4)) for _ in range(5)]
    for p in params:
        p.grad = engine.ones(4)
    opt = optim.SGD(params, lr=0.1)
    scaler = GradScaler(init_scale=2.0)
    reads = []
    import engine.amp as amp_mod

    orig = amp_mod._unscale_grads

    def counting(ps, inv):
        flag = orig(ps, inv)
        reads.append(flag)
        return flag

    monkeypatch.setattr(amp_mod, "_unscale_grads", counting)
    scaler.step(opt)
    scaler.update()
    assert len(reads) == 1 and np.asarray(reads[0]).shape == ()
    np.testing.assert_allclose(_np(params[0]), 1 - 0.1 * 0.5)


# ------------------------------------------------ cuda: one kernel for the unscale and the check
def _grad_module():
    from cuda_sim import hostbuild

    from kernels import launch

    return hostbuild.build(launch.CUDA_DIR / "grad.cu", launch.name_expressions("grad.cu"))


@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan, 1e38])
def test_unscale_multi_kernel_matches_numpy(bad):
    """kernels/cuda/grad.cu's unscale_multi on the host build: the flat products equal the
    concatenation times float32(inv_scale), and the flag is set exactly when one is inf/NaN (1e38
    times 8 overflows: the check is on the product, as the concatenation's)."""
    from cuda_sim import cupy as sim

    from kernels import launch

    rng = np.random.default_rng(1)
    shapes = [(3, 4), (0,), (1,), (257,), (2, 3, 5)]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if bad is not None:
        grads[3][200] = bad
    inv = np.float32(8.0)
    want = np.concatenate([g.ravel() for g in grads]) * inv
    dev = [sim.asarray(g) for g in grads]
    offsets = np.cumsum([0] + [g.size for g in grads]).astype(np.int64)
    fn = _grad_module().get_function("unscale_multi<float>")
    for grid in ((1,), (3,), (launch.blocks(int(offsets[-1])),)):
        table = sim.asarray(np.array([g.data.ptr for g in dev], np.uint64))
        flat, found = sim.empty(int(offsets[-1]), np.float32), sim.zeros(2, np.int32)
        args = (table, sim.asarray(offsets), flat, found, np.int64(offsets[-1]), np.int32(5), inv)
        fn(grid, (32,), args)
        np.testing.assert_array_equal(flat.get(), want)
        assert found.get().tolist() == [int(bad is not None), 0]
    for g, d in zip(grads, dev, strict=True):
        np.testing.assert_array_equal(d.get(), g)  # the gradients are not written


def _counted_unscale(params, scale):
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in")
    from cuda_sim import counters

    opt = optim.SGD(params, lr=0.1)
    scaler = GradScaler(init_scale=scale)
    with counters.count() as c:
        scaler.unscale_(opt)
    return scaler, opt, c


def test_unscale_on_cuda_is_one_launch_and_one_copy(cuda):
    """An optimizer's unscale and inf/NaN check on cuda: one kernel and one host-to-device copy
    (its address table and zeroed flag), no sync; before: a concatenation, a multiply,
    isfinite, all and a negation (5 launches). The step then reads the flag once."""
    rng = np.random.default_rng(2)
    vals = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,), (2, 2, 2)]]
    params = [layers.Parameter(engine.zeros(v.shape, device=cuda)) for v in vals]
    for p, v in zip(params, vals, strict=True):
        p.grad = engine.tensor(v * 4, device=cuda)
    scaler, opt, c = _counted_unscale(params, 4.0)
    assert (c.launches, c.h2d, c.syncs) == (1, 1, 0), dict(c.launch_sites)
    assert c.launch_kinds["RawKernel"] == 1
    for p, v in zip(params, vals, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), v)
    scaler.step(opt)
    np.testing.assert_array_equal(params[0].numpy(), -0.1 * vals[0])


def test_unscale_on_cuda_finds_inf_and_skips(cuda):
    vals = [np.ones((2, 3), np.float32), np.array([1.0, np.nan], np.float32)]
    params = [layers.Parameter(engine.zeros(v.shape, device=cuda)) for v in vals]
    for p, v in zip(params, vals, strict=True):
        p.grad = engine.tensor(v, device=cuda)
    scaler, opt, _ = _counted_unscale(params, 2.0)
    assert scaler.step(opt) is None  # skipped
    scaler.update()
    assert scaler.get_scale() == 1.0
    np.testing.assert_array_equal(params[0].numpy(), np.zeros((2, 3), np.float32))


def test_unscale_on_cuda_never_writes_a_shared_gradient_twice(cuda):
    """Two parameters whose .grad is one array (a backward may hand one gradient to both):
    each is unscaled once, and the array itself is left as it was."""
    params = [layers.Parameter(engine.zeros(3, device=cuda)) for _ in range(2)]
    shared = engine.tensor(np.full(3, 8.0, np.float32), device=cuda)
    for p in params:
        p.grad = shared
    _counted_unscale(params, 4.0)
    for p in params:
        np.testing.assert_array_equal(p.grad.numpy(), np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(shared.numpy(), np.full(3, 8.0, np.float32))


def test_unscale_multi_refuses_a_group_it_cannot_table(cuda):
    """The kernel reads every gradient through one address table in one dtype: a strided or
    differently typed gradient is one clear error naming it (the engine routes those to the
    concatenation path before they get here)."""
    from kernels import grad_gpu, launch

    cp = launch._cupy()
    ok = cp.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"unscale_multi: gradient 1 .*C-contiguous float32"):
        grad_gpu.unscale_multi([ok, cp.ones((3, 4), np.float32)[:, ::2]], 0.5)
    with pytest.raises(ValueError, match=r"unscale_multi: gradient 1 \(float64"):
        grad_gpu.unscale_multi([ok, cp.ones(3, np.float64)], 0.5)


@pytest.fixture
def cuda():
    if not engine.cuda.is_available():
        pytest.skip("needs cuda (the CuPy stand-in in CI)")
    return "cuda"
