"""The fused training-mode batch norm (engine.ops.norm) against its composition in engine ops,
float64 gradcheck, double backward and PyTorch, on cpu and on cuda (two kernels each way there,
kernels/cuda/norm.cu, with the running statistics moved inside the forward)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.ops.norm import batch_norm_train

SHAPES = [(6, 3), (5, 4, 7), (4, 3, 5, 6)]


def composed(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    c = x - x.mean(axes, keepdim=True)
    y = c * ((c * c).mean(axes, keepdim=True) + eps).rsqrt()
    if w is not None:
        y = y * w.reshape(shape)
    return y + b.reshape(shape) if b is not None else y


def _inputs(shape, dtype=np.float64, seed=0, affine=True, device="cpu"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) * 3 + 1
    x = engine.tensor(x, device=device, requires_grad=True)
    if not affine:
        return x, None, None
    w = engine.tensor(rng.standard_normal(shape[1]).astype(dtype), device=device)
    b = engine.tensor(rng.standard_normal(shape[1]).astype(dtype), device=device)
    return x, w.requires_grad_(), b.requires_grad_()


def _np(a):
    """A Tensor's or a raw (NumPy/CuPy) array's values on the host."""
    if isinstance(a, engine.Tensor):
        return a.cpu().numpy()
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_matches_the_composition(shape, affine, device):
    x, w, b = _inputs(shape, affine=affine, device=device)
    y, mean, var = batch_norm_train(x, w, b, 1e-5)
    ref = composed(x, w, b)
    np.testing.assert_allclose(_np(y), _np(ref), rtol=1e-10, atol=1e-12)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(_np(mean), _np(x).mean(axes), rtol=1e-12)
    np.testing.assert_allclose(_np(var), _np(x).var(axes), rtol=1e-12)
    gy = engine.tensor(np.random.default_rng(1).standard_normal(shape), device=device)
    params = [t for t in (x, w, b) if t is not None]
    got = engine.grad(y, params, gy)
    want = engine.grad(ref, params, gy)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(_np(g), _np(r), rtol=1e-9, atol=1e-10)


def test_bias_without_weight_and_partial_requires_grad(device):
    x, w, b = _inputs((5, 3, 4), device=device)
    w = None
    y, _, _ = batch_norm_train(x, w, b, 1e-5)
    gx, gb = engine.grad(y.sum() + (y * y).sum(), (x, b))
    rx, rb = engine.grad(composed(x, None, b).sum() + (composed(x, None, b) ** 2).sum(), (x, b))
    np.testing.assert_allclose(_np(gx), _np(rx), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(_np(gb), _np(rb), rtol=1e-9)
    x2, w2, b2 = _inputs((5, 3, 4), device=device)
    x2.requires_grad_(False)
    y2, _, _ = batch_norm_train(x2, w2, b2, 1e-5)
    y2.sum().backward()
    assert x2.grad is None and w2.grad is not None and b2.grad is not None
    rw, rb = engine.grad(composed(x2, w2, b2).sum(), (w2, b2))
    np.testing.assert_allclose(_np(w2.grad), _np(rw), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(_np(b2.grad), _np(rb), rtol=1e-9)


def test_float32_stays_float32(device):
    x, w, b = _inputs((8, 4, 3, 3), dtype=np.float32, device=device)
    y, mean, var = batch_norm_train(x, w, b, 1e-5)
    assert y.dtype == np.float32 and mean.dtype == np.float32 and var.dtype == np.float32
    y.backward(engine.ones_like(y))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_gradcheck(device):
    x, w, b = _inputs((4, 3, 2, 3), seed=2, device=device)
    assert engine.gradcheck(lambda x, w, b: batch_norm_train(x, w, b, 1e-5)[0], (x, w, b))


def test_double_backward_matches_the_composition(device):
    x, w, b = _inputs((4, 3, 2, 3), seed=3, device=device)
    gy = engine.tensor(np.random.default_rng(4).standard_normal(x.shape), device=device)

    def second(fn):
        gx, gw = engine.grad(fn(x, w, b), (x, w), gy, create_graph=True)
        return engine.grad((gx * gx).sum() + (gw * gw).sum(), (x, w, b), allow_unused=True)

    got = second(lambda x, w, b: batch_norm_train(x, w, b, 1e-5)[0])
    want = second(composed)
    for g, r in zip(got, want, strict=True):
        if r is None:
            assert g is None or np.allclose(_np(g), 0)
        else:
            np.testing.assert_allclose(_np(g), _np(r), rtol=1e-8, atol=1e-10)


def test_layer_matches_torch_over_steps(device):
    torch = pytest.importorskip("torch")
    import layers as nn

    ours, theirs = nn.BatchNorm2d(3).to(device), torch.nn.BatchNorm2d(3)
    rng = np.random.default_rng(5)
    with engine.no_grad():
        ours.weight.copy_(engine.tensor(rng.standard_normal(3).astype(np.float32)))
    theirs.weight.data = torch.tensor(ours.weight.numpy().copy())
    for step in range(3):
        x = (rng.standard_normal((6, 3, 4, 5)) * (step + 1)).astype(np.float32)
        ex = engine.tensor(x, device=device, requires_grad=True)
        tx = torch.tensor(x, requires_grad=True)
        ey, ty = ours(ex), theirs(tx)
        g = rng.standard_normal(x.shape).astype(np.float32)
        (ey * ey + ey * engine.tensor(g, device=device)).sum().backward()
        (ty * ty + ty * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(_np(ey), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(_np(ex.grad), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(_np(ours.weight.grad), theirs.weight.grad.numpy(), rtol=1e-4)
    np.testing.assert_allclose(_np(ours.bias.grad), theirs.bias.grad.numpy(), rtol=1e-4)
    np.testing.assert_allclose(_np(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(_np(ours.running_var), theirs.running_var.numpy(), rtol=1e-5)
    assert int(_np(ours.num_batches_tracked)) == 3


def test_running_statistics_move_inside_the_forward_on_cuda_as_on_the_cpu(device):
    """The kernel's running-statistic update (cuda) equals the two in-place ops (cpu), with
    momentum None (a cumulative average) too; the buffers' versions move."""
    import layers as nn

    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((4, 3, 5)) * (k + 1) + k for k in range(3)]
    for momentum in (0.1, None):
        ref, ours = nn.BatchNorm1d(3, momentum=momentum), nn.BatchNorm1d(3, momentum=momentum)
        ref, ours = ref.double(), ours.double().to(device)
        version = ours.running_mean._version[0]
        for x in xs:
            ref(engine.tensor(x))
            ours(engine.tensor(x, device=device))
        np.testing.assert_allclose(_np(ours.running_mean), _np(ref.running_mean), rtol=1e-12)
        np.testing.assert_allclose(_np(ours.running_var), _np(ref.running_var), rtol=1e-12)
        assert ours.running_mean._version[0] > version


def _reference64(x, w, b, gy, eps=1e-5):
    """y, gx, gw, gb of training-mode batch norm in float64 from the given arrays."""
    x, w, b, gy = (a.astype(np.float64) for a in (x, w, b, gy))
    axes, shape = (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)
    centred = x - x.mean(axes).reshape(shape)
    invstd = 1 / np.sqrt((centred * centred).mean(axes) + eps)
    xhat = centred * invstd.reshape(shape)
    n = x.size // x.shape[1]
    gb, gw = gy.sum(axes), (gy * xhat).sum(axes)
    gx = (w * invstd).reshape(shape) * (gy - gb.reshape(shape) / n - xhat * gw.reshape(shape) / n)
    return xhat * w.reshape(shape) + b.reshape(shape), gx, gw, gb


@pytest.mark.parametrize("shape, offset", [((8, 6, 7, 7), 0.5), ((8, 6, 5, 5), 30.0), ((16, 8), 5)])
def test_float32_cpu_values_against_float64(shape, offset):
    """The float32 CPU forward and backward (centred input kept, per-channel factors) stay
    within float32 rounding of a float64 reference, a mean far from 0 included."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 2 + offset).astype(np.float32)
    w, b = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    gy = rng.standard_normal(shape).astype(np.float32)
    params = [engine.tensor(a, requires_grad=True) for a in (x, w, b)]
    y, _, _ = batch_norm_train(*params, 1e-5)
    y.backward(engine.tensor(gy))
    got = [y.numpy()] + [t.grad.numpy() for t in params]
    for g, r, tol in zip(got, _reference64(x, w, b, gy), (1e-6, 1e-6, 1e-5, 1e-6), strict=True):
        assert g.dtype == np.float32
        assert np.max(np.abs(g - r)) <= tol * np.max(np.abs(r))


@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, False)])
def test_cpu_forward_is_one_scale_and_shift_of_the_centred_input(affine):
    """y = (x - mean) (w invstd) + b with w invstd one per-channel factor (one pass, not
    xhat = centred invstd and then xhat w), bit for bit; the forward keeps x - mean for the
    backward and forms no xhat."""
    from engine.ops.norm import BatchNormTrain

    rng = np.random.default_rng(10)
    shape = (4, 3, 5, 6)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    w, b = (rng.standard_normal(3).astype(np.float32) for _ in range(2))
    args = [x] + [a for a, on in zip((w, b), affine) if on]
    fn = BatchNormTrain(1e-5)
    y = fn(*[engine.tensor(a, requires_grad=True) for a in args]).numpy()
    shape = (1, 3, 1, 1)
    centred = x - fn.mean.reshape(shape)
    factor = fn.invstd * w if affine[0] else fn.invstd
    want = centred * factor.reshape(shape)
    if affine[1]:
        want = want + b.reshape(shape)
    assert y.tobytes() == want.tobytes()
    assert fn.centred.tobytes() == centred.tobytes()
    assert not hasattr(fn, "xhat")


def test_sync_batch_norm_two_equal_ranks_against_one_process(monkeypatch):
    """SyncBatchNormTrain on two ranks that hold the same batch (the all-reduce doubles, as a
    sum over them would) against one process with the batch twice: the input gradient is the
    whole batch's, the weight and bias gradients this rank's half of it (DDP averages them)."""
    from engine.ops.norm import SyncBatchNormTrain, sync_batch_norm_train

    monkeypatch.setattr(SyncBatchNormTrain, "_all_reduce", lambda self, a: a.__imul__(2))
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3, 5)) * 2 + 1
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    gy = rng.standard_normal(x.shape)
    ours = [engine.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = sync_batch_norm_train(*ours, 1e-5)[0]
    y.backward(engine.tensor(gy))
    whole = [engine.tensor(a, requires_grad=True) for a in (np.concatenate([x, x]), w, b)]
    ref = batch_norm_train(*whole, 1e-5)[0]
    ref.backward(engine.tensor(np.concatenate([gy, gy])))
    np.testing.assert_allclose(y.numpy(), ref.numpy()[:4], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        ours[0].grad.numpy(), whole[0].grad.numpy()[:4], rtol=1e-9, atol=1e-12
    )
    for got, want in zip(ours[1:], whole[1:], strict=True):
        np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy() / 2, rtol=1e-12)
