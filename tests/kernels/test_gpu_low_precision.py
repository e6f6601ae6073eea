"""Conv and pooling in float16 on cuda run the half RawKernels themselves (issue 14): under
autocast, a conv net's forward and backward launch im2col/col2im and the pool kernels as
``<__half, float>``, keep float16 columns, and end within float16's rounding of the float32 run.
(On the CPU the same ops round float32 results: that path is tested in tests/engine.)
bfloat16 kernels are tested on the host build (test_cuda_kernels_host.py): the CuPy stand-in
refuses bfloat16 arrays."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine.device import unavailable_reason
from kernels import launch


def _needs_cuda():
    pytest.importorskip("cupy")
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def launched(monkeypatch):
    """(source, kernel, dtype name) of every RawKernel looked up through kernels.launch."""
    seen = []
    real = launch.kernel

    def spy(source, name, dtype):
        seen.append((source, name, np.dtype(dtype).name))
        return real(source, name, dtype)

    monkeypatch.setattr(launch, "kernel", spy)
    return seen


def _net(x, w, pool):
    y = F.relu(F.conv2d(x, w, padding=1))
    y = F.max_pool2d(y, 2) if pool == "max" else F.avg_pool2d(y, 2)
    return (y * y).mean()


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_autocast_conv_runs_in_float16_end_to_end_on_cuda(launched, pool):
    _needs_cuda()
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    ws = (0.3 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32)
    grads = {}
    for mode in ("float32", "float16"):
        x = engine.tensor(xs, device="cuda", requires_grad=True)
        w = engine.tensor(ws, device="cuda", requires_grad=True)
        with engine.autocast("cuda", dtype=engine.float16, enabled=mode == "float16"):
            loss = _net(x, w, pool)
        loss.backward()
        grads[mode] = (float(loss.item()), x.grad.numpy(), w.grad.numpy())
        assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32  # master dtype
    half = {(src, name) for src, name, dt in launched if dt == "float16"}
    pools = {f"{pool}_pool2d_forward", f"{pool}_pool2d_backward"}
    assert {("conv.cu", "im2col"), ("conv.cu", "col2im")} <= half
    assert {("pool.cu", k) for k in pools} <= half
    # float16 (11-bit significand) through conv, pool and their gradients: about 1e-3 relative.
    (l32, gx32, gw32), (l16, gx16, gw16) = grads["float32"], grads["float16"]
    assert abs(l16 - l32) <= 1e-2 * abs(l32)
    for a, b in ((gx16, gx32), (gw16, gw32)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-2 * np.abs(b).max())


def test_float16_conv_keeps_float16_columns_on_cuda():
    """The kept im2col columns (for the weight gradient) are float16 on cuda: half the bytes."""
    from kernels import geometry, gpu

    _needs_cuda()
    import cupy as cp

    x = cp.asarray(np.ones((1, 2, 5, 5), np.float16))
    w = cp.asarray(np.ones((3, 2, 3, 3), np.float16))
    geo = geometry.conv2d(x.shape, w.shape, 1, 1, 1, 1)
    y, cols = gpu.conv2d_forward(x, w, None, geo, keep_cols=True)
    assert y.dtype == np.float16 and cols.dtype == np.float16
    assert float(y[0, 0, 2, 2].get()) == 18.0  # 2 channels x 9 ones
