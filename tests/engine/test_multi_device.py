"""Work on `cuda:1` runs on device 1 while device 0 is current (issue 12, multi-device).

CuPy runs kernels and allocates on the *current* device; an op on arrays of another device
raises (no peer access) or runs across devices. Every op makes its tensors' device current once,
at the dispatch point (`Function.__call__` and the backward walk). The CuPy stand-in models two
devices and fails as CuPy does, so these tests run in CI; on a one-GPU machine they skip.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from test_inputs_unchanged import _cases, _flat

import engine
from engine.device import cupy

pytestmark = pytest.mark.cuda


@pytest.fixture
def two_gpus():
    if not engine.cuda.is_available() or engine.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices (the CuPy stand-in has two)")
    cp = cupy()
    assert cp.cuda.runtime.getDevice() == 0
    yield cp
    assert cp.cuda.runtime.getDevice() == 0, "an op left another device current"


def _on(t, index: int) -> bool:
    return t.device == f"cuda:{index}" and t.array.device.id == index


def _tensors(arrays, device, requires_grad):
    """Float arrays as float32 tensors (requiring grad when asked), the others as they are."""
    out = []
    for a in map(np.asarray, arrays):
        is_float = a.dtype.kind == "f"
        a = a.astype(np.float32) if is_float else a
        out.append(engine.tensor(a, device=device, requires_grad=requires_grad and is_float))
    return out


def _run(row, op, arrays, device):
    xs = _tensors(arrays, device, requires_grad=row.grad)
    outs = _flat(row.call(op, *xs))
    grads = []
    wanted = [o for o in outs if o.requires_grad]
    if wanted:
        gys = [engine.ones(o.shape, dtype=o.dtype, device=device) for o in wanted]
        engine.autograd.backward(wanted, gys)
        grads = [x.grad for x in xs if x.grad is not None]
    return outs, grads


MOVES = {"Tensor.cpu", "Tensor.cuda", "engine.to_device"}  # results meant to leave cuda:1
RANDOM = {"engine.rand_like", "engine.randn_like", "F.dropout", "F.dropout2d"}  # per-device RNG


@pytest.mark.parametrize("name, op, row", _cases())
def test_every_op_runs_on_cuda_1_as_on_cuda_0(two_gpus, name, op, row):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrays = row.inputs(rng)
    outs1, grads1 = _run(row, op, arrays, "cuda:1")
    outs0, grads0 = _run(row, op, arrays, "cuda:0")
    if name not in MOVES:
        assert all(_on(t, 1) for t in outs1 + grads1), f"{name}: a result left cuda:1"
    if name not in RANDOM:
        for a, b in zip(outs1 + grads1, outs0 + grads0, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def _models(step) -> list:
    """The modules a workload's step closure trains."""
    cells = [c.cell_contents for c in (step.__closure__ or ())]
    return [c for c in cells if isinstance(c, engine.Tensor) is False and hasattr(c, "parameters")]


@pytest.mark.parametrize("workload", ["mlp", "cnn", "dcgan"])
def test_benchmark_training_steps_run_on_cuda_1_as_on_cuda_0(two_gpus, workload):
    from benchmarks.workloads import WORKLOADS, ours_lib

    w = next(w for w in WORKLOADS if w.name == workload)
    weights = {}
    for index in (1, 0):
        engine.manual_seed(0)
        step = w.build(ours_lib(f"cuda:{index}"))
        step()
        step()
        params = [p for m in _models(step) for p in m.parameters()]
        assert params and all(_on(p, index) for p in params)
        weights[index] = [p.numpy() for p in params]
    if workload == "cnn":
        return  # its dropout draws from each device's own generator
    for a, b in zip(weights[1], weights[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_moving_between_devices_keeps_the_gradient_path(two_gpus):
    x = engine.tensor(np.arange(6.0, dtype=np.float32), device="cuda:0", requires_grad=True)
    y = x.to("cuda:1")
    assert _on(y, 1) and _on(x, 0)
    (y * y).sum().backward()
    assert _on(x.grad, 0)
    np.testing.assert_array_equal(x.grad.numpy(), 2 * np.arange(6.0, dtype=np.float32))
    with pytest.raises(RuntimeError, match="cuda:0.*cuda:1|cuda:1.*cuda:0"):
        x + y


def test_clipping_and_zero_grad_work_on_cuda_1(two_gpus):
    from optimizers import SGD, clip_grad_norm_, clip_grad_value_

    w = engine.tensor(np.full((2, 3), 2.0, np.float32), device="cuda:1", requires_grad=True)
    (w * w).sum().backward()  # gradient 4 everywhere
    assert _on(clip_grad_norm_([w], 1.0), 1) and _on(w.grad, 1)
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 4 / (np.sqrt(96) + 1e-6)))
    clip_grad_value_([w], 0.1)
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 0.1))
    SGD([w], lr=0.1).zero_grad(set_to_none=False)
    assert _on(w.grad, 1) and not w.grad.numpy().any()
