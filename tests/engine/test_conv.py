"""conv2d, conv_transpose2d, pooling, interpolate and pad: values and gradients against PyTorch,
float64 central differences, double backward, and the errors.

Every test takes the `device` fixture (cpu, and cuda through the CuPy stand-in or a real GPU).
Shapes are tiny: the numerical checks loop over elements.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, requires_torch

import engine
import engine.functional as F
from kernels import cpu, geometry, winograd

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # PyTorch is the optional oracle
    torch = TF = None


# Helpers -----------------------------------------------------------------------------------
def _rng(seed):
    return np.random.default_rng(seed)


def _distinct(shape, seed):
    """Values in [-1, 1) at least 2/size apart: no ties for max-pool, safe central differences."""
    n = int(np.prod(shape))
    return (_rng(seed).permutation(n).reshape(shape) * (2.0 / n) - 1.0).astype(np.float64)


def _ours(arrays, device, dtype=np.float64, grad=True):
    return [
        None if a is None else engine.tensor(a.astype(dtype), device=device, requires_grad=grad)
        for a in arrays
    ]


def _torch(arrays, dtype=np.float64, grad=True):
    return [
        None if a is None else torch.tensor(a.astype(dtype), requires_grad=grad) for a in arrays
    ]


def compare_with_torch(our_fn, torch_fn, arrays, device, dtype=np.float32, atol=1e-5):
    """Forward values and the gradients of every input for a random cotangent."""
    if torch is None:
        pytest.skip("PyTorch is not installed; the gradients were checked numerically only")
    ours, theirs = _ours(arrays, device, dtype), _torch(arrays, dtype)
    y, ty = our_fn(*ours), torch_fn(*theirs)
    assert y.device == device and y.dtype == dtype
    assert_close(y, ty, atol, what="forward")
    v = _rng(99).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.from_numpy(v))
    y.backward(engine.tensor(v, device=device))
    for i, (a, t) in enumerate(zip(ours, theirs, strict=True)):
        if a is not None:
            assert a.grad.device == device and a.grad.dtype == dtype
            assert_close(a.grad, t.grad, atol * 10, 1e-3, what=f"gradient of input {i}")


def gradcheck(fn, arrays, device, **kw):
    """float64 central differences for every (non-None) input."""
    inputs = _ours(arrays, device)
    assert engine.gradcheck(lambda *xs: fn(*xs), [x for x in inputs if x is not None], **kw)


def _flat_grads(outputs, inputs):
    gs = engine.grad(outputs, inputs, create_graph=True)
    return engine.cat([g.reshape(-1) for g in gs])


# Convolution -------------------------------------------------------------------------------
def _conv_configs(n, seed):
    """Random conv settings with a valid output: odd sizes, stride > kernel, groups, dilation."""
    rng, out = _rng(seed), []
    while len(out) < n:
        g = int(rng.choice([1, 1, 2, 3]))
        cfg = dict(
            N=int(rng.integers(1, 3)),
            C=g * int(rng.integers(1, 3)),
            Co=g * int(rng.integers(1, 3)),
            H=int(rng.integers(3, 9)),
            W=int(rng.integers(3, 9)),
            k=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            stride=(int(rng.integers(1, 5)), int(rng.integers(1, 4))),
            padding=(int(rng.integers(0, 3)), int(rng.integers(0, 2))),
            dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
            groups=g,
            bias=bool(rng.integers(0, 2)),
        )
        eff = [d * (k - 1) + 1 for d, k in zip(cfg["dilation"], cfg["k"], strict=True)]
        padded = [n + 2 * p for n, p in zip((cfg["H"], cfg["W"]), cfg["padding"], strict=True)]
        if padded[0] >= eff[0] and padded[1] >= eff[1]:
            out.append(cfg)
    return out


def _conv_arrays(c, seed=0):
    rng = _rng(seed)
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"]))
    w = rng.standard_normal((c["Co"], c["C"] // c["groups"]) + c["k"])
    b = rng.standard_normal(c["Co"]) if c["bias"] else None
    return [x, w, b]


def _conv_kw(c):
    keys = ("stride", "padding", "dilation", "groups")
    return {k: c[k] for k in keys}


CONV_CONFIGS = _conv_configs(8, seed=1) + [
    # stride larger than the kernel, 1x1 kernel, depthwise: named explicitly.
    dict(
        N=2,
        C=2,
        Co=3,
        H=7,
        W=5,
        k=(2, 2),
        stride=(3, 3),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
        bias=True,
    ),
    dict(
        N=1,
        C=3,
        Co=2,
        H=5,
        W=4,
        k=(1, 1),
        stride=(1, 2),
        padding=(1, 0),
        dilation=(1, 1),
        groups=1,
        bias=False,
    ),
    dict(
        N=2,
        C=4,
        Co=4,
        H=6,
        W=6,
        k=(3, 3),
        stride=(1, 1),
        padding=(2, 2),
        dilation=(2, 2),
        groups=4,
        bias=True,
    ),
]


@requires_torch
@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=lambda c: f"g{c['groups']}s{c['stride']}")
def test_conv2d_matches_torch(device, cfg):
    kw = _conv_kw(cfg)
    compare_with_torch(
        lambda x, w, b=None: F.conv2d(x, w, b, **kw),
        lambda x, w, b=None: TF.conv2d(x, w, b, **kw),
        [a for a in _conv_arrays(cfg) if a is not None],
        device,
        atol=1e-4,
    )


@pytest.mark.parametrize("cfg", CONV_CONFIGS[:4] + CONV_CONFIGS[-3:])
def test_conv2d_gradcheck(device, cfg):
    kw = _conv_kw(cfg)
    small = dict(cfg, N=1)
    arrays = [a for a in _conv_arrays(small, seed=3) if a is not None]
    gradcheck(lambda x, w, b=None: F.conv2d(x, w, b, **kw), arrays, device)


@requires_torch
def test_conv2d_float64_and_unbatched_input(device):
    x, w, b = _conv_arrays(CONV_CONFIGS[-1])
    y = F.conv2d(*_ours([x, w, b], device, grad=False), padding=2, dilation=2, groups=4)
    assert y.dtype == np.float64
    assert_close(
        y, TF.conv2d(*_torch([x, w, b], grad=False), padding=2, dilation=2, groups=4), 1e-10
    )
    y3 = F.conv2d(*_ours([x[0], w, b], device, grad=False), padding=2, dilation=2, groups=4)
    assert_close(y3, y.numpy()[0], 1e-10)


@requires_torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "padding, k, dilation", [("same", (3, 2), (1, 2)), ("same", (4, 3), 1), ("valid", (2, 3), 1)]
)
def test_conv2d_string_padding(device, padding, k, dilation):
    x = _rng(1).standard_normal((1, 2, 6, 5))
    w = _rng(2).standard_normal((3, 2) + k)
    compare_with_torch(
        lambda x, w: F.conv2d(x, w, padding=padding, dilation=dilation),
        lambda x, w: TF.conv2d(x, w, padding=padding, dilation=dilation),
        [x, w],
        device,
        atol=1e-4,
    )


def _conv_penalty(conv, x, w, b, v):
    """A gradient penalty: |d L / d x|^2 + <d L / d w, v_w> with L = sum(conv(x, w, b)^2 v)."""
    y = conv(x, w, b)
    gx, gw = _grad_pair(y, x, w, v)
    return (gx * gx).sum() + (gw * gw).sum() * 0.5


def _grad_pair(y, x, w, v):
    if isinstance(y, engine.Tensor):
        return engine.grad((y * y * v).sum(), (x, w), create_graph=True)
    return torch.autograd.grad((y * y * v).sum(), (x, w), create_graph=True)


@requires_torch
@pytest.mark.parametrize("cfg", [CONV_CONFIGS[0], CONV_CONFIGS[-3], CONV_CONFIGS[-1]])
def test_conv2d_double_backward_matches_torch(device, cfg):
    kw = _conv_kw(cfg)
    x, w, b = _conv_arrays(dict(cfg, bias=True))
    ours, theirs = _ours([x, w, b], device), _torch([x, w, b])
    y_shape = TF.conv2d(*theirs, **kw).shape
    v = _rng(5).standard_normal(tuple(y_shape))
    p = _conv_penalty(lambda *a: F.conv2d(*a, **kw), *ours, engine.tensor(v, device=device))
    tp = _conv_penalty(lambda *a: TF.conv2d(*a, **kw), *theirs, torch.from_numpy(v))
    assert_close(p, tp, 1e-8, 1e-8, "penalty")
    p.backward()
    tp.backward()
    for a, t, name in zip(ours, theirs, "xwb", strict=True):
        assert_close(a.grad, t.grad, 1e-8, 1e-6, f"second-order gradient of {name}")


@pytest.mark.parametrize("cfg", [CONV_CONFIGS[1], CONV_CONFIGS[-3]])
def test_conv2d_double_backward_gradcheck(device, cfg):
    kw = _conv_kw(cfg)
    x, w, b = _conv_arrays(dict(cfg, N=1, bias=True), seed=4)

    def grads(x, w, b):
        y = F.conv2d(x, w, b, **kw)
        return _flat_grads((y * y).sum(), (x, w, b))

    gradcheck(grads, [x, w, b], device)


def test_conv2d_grad_of_weight_gradient_gradcheck(device):
    # Exercises Conv2dGradWeight.backward (in both of its inputs) directly.
    x = _rng(6).standard_normal((1, 2, 5, 4))
    w = _rng(7).standard_normal((3, 2, 2, 3))

    def gw(x, w):
        y = F.conv2d(x, w, stride=(2, 1), padding=1)
        return engine.grad((y * y).sum(), w, create_graph=True)[0]

    gradcheck(gw, [x, w], device)


# Transposed convolution --------------------------------------------------------------------
TRANSPOSE_CONFIGS = [
    # (N, C, H, W, Cout/groups, k, stride, padding, output_padding, groups, dilation, bias)
    (2, 2, 3, 4, 3, (3, 3), (2, 2), (1, 1), (1, 1), 1, (1, 1), True),
    (1, 4, 3, 3, 1, (2, 3), (3, 1), (0, 1), (2, 0), 2, (1, 1), False),
    (1, 3, 4, 2, 2, (3, 2), (1, 2), (2, 0), (0, 1), 1, (2, 1), True),
    (2, 2, 2, 3, 2, (2, 2), (1, 1), (0, 0), (1, 1), 2, (3, 2), True),  # output_padding >= stride
    (1, 1, 5, 5, 1, (1, 1), (2, 2), (0, 0), (0, 0), 1, (1, 1), False),
]


def _transpose_arrays(cfg, seed=0):
    N, C, H, W, cog, k, _, _, _, g, _, bias = cfg
    rng = _rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C, cog) + k)
    return [x, w] + ([rng.standard_normal(cog * g)] if bias else [])


def _transpose_kw(cfg):
    _, _, _, _, _, _, s, p, op, g, d, _ = cfg
    return dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


@requires_torch
@pytest.mark.parametrize("cfg", TRANSPOSE_CONFIGS)
def test_conv_transpose2d_matches_torch(device, cfg):
    kw = _transpose_kw(cfg)
    compare_with_torch(
        lambda x, w, b=None: F.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b=None: TF.conv_transpose2d(x, w, b, **kw),
        _transpose_arrays(cfg),
        device,
        atol=1e-4,
    )


@pytest.mark.parametrize("cfg", TRANSPOSE_CONFIGS[:4])
def test_conv_transpose2d_gradcheck(device, cfg):
    kw = _transpose_kw(cfg)
    arrays = _transpose_arrays((1,) + cfg[1:], seed=2)
    gradcheck(lambda x, w, b=None: F.conv_transpose2d(x, w, b, **kw), arrays, device)


def test_conv_transpose2d_double_backward_gradcheck(device):
    kw = _transpose_kw(TRANSPOSE_CONFIGS[0])
    x, w, b = _transpose_arrays((1,) + TRANSPOSE_CONFIGS[0][1:], seed=8)

    def grads(x, w, b):
        y = F.conv_transpose2d(x, w, b, **kw)
        return _flat_grads((y * y).sum(), (x, w))

    gradcheck(grads, [x, w, b], device)


# Max pooling -------------------------------------------------------------------------------
POOL_CONFIGS = [
    # (shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1), 1, False),
    ((2, 1, 7, 7), 2, 3, 0, 1, True),  # stride > kernel
    ((1, 2, 9, 8), 3, 2, 1, 2, True),
    ((1, 1, 6, 7), (2, 3), (2, 2), (1, 0), (2, 1), True),
    ((1, 2, 5, 5), 3, 1, 1, 1, False),  # overlapping windows
]


@requires_torch
@pytest.mark.parametrize("cfg", POOL_CONFIGS)
def test_max_pool2d_matches_torch(device, cfg):
    shape, k, s, p, d, ceil = cfg
    x = _distinct(shape, seed=1)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    compare_with_torch(
        lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), [x], device
    )
    y, idx = F.max_pool2d(*_ours([x], device, grad=False), **kw, return_indices=True)
    ty, tidx = TF.max_pool2d(*_torch([x], grad=False), **kw, return_indices=True)
    assert idx.dtype == np.int64 and idx.device == device
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    assert_close(y, ty, 0.0)


@pytest.mark.parametrize("cfg", POOL_CONFIGS[1:])
def test_max_pool2d_gradcheck_and_double_backward(device, cfg):
    shape, k, s, p, d, ceil = cfg
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    x = _distinct((1,) + shape[1:], seed=2)
    gradcheck(lambda x: F.max_pool2d(x, **kw), [x], device, eps=1e-4)
    y, idx = F.max_pool2d(engine.tensor(x, device=device), **kw, return_indices=True)
    n, c = y.shape[:2]
    picked = np.take_along_axis(x.reshape(n, c, -1), idx.numpy().reshape(n, c, -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(y.shape), y.numpy())

    def grad(x):  # the gradient of sum(y^3): a scatter of 3 y^2, differentiable through y
        y = F.max_pool2d(x, **kw)
        return engine.grad((y * y * y).sum(), x, create_graph=True)[0]

    gradcheck(grad, [x], device, eps=1e-4)


@pytest.mark.parametrize(
    "shape, k", [((1, 1, 2, 3), 2), ((1, 1, 4, 4), 2), ((1, 1, 3, 3), 3), ((1, 1, 2, 2), 1)]
)
def test_max_pool2d_leaves_its_input_alone(device, shape, k):
    # One image, one channel, no padding: the first window view can be contiguous, and the CPU
    # kernel once wrote its running maximum into it (the input), moving the next call's gradient.
    x0 = _distinct(shape, seed=5)
    x = engine.tensor(x0, device=device, requires_grad=True)
    F.max_pool2d(x, k).sum().backward()
    np.testing.assert_array_equal(x.detach().numpy(), x0)
    g1 = x.grad.numpy().copy()
    x.grad = None
    F.max_pool2d(x, k).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), g1)


@requires_torch
def test_max_pool2d_gradient_penalty_matches_torch(device):
    x = _distinct((2, 2, 6, 7), seed=3)
    (ours,), (theirs,) = _ours([x], device), _torch([x])
    kw = dict(kernel_size=3, stride=2, padding=1)
    v = _rng(2).standard_normal((2, 2, 6, 7))
    cases = (
        (ours, F, engine.tensor(v, device=device), engine),
        (theirs, TF, torch.tensor(v), torch),
    )
    for a, fn, vv, lib in cases:
        y = fn.max_pool2d(a, **kw)
        (g,) = lib.autograd.grad((y * y * y).sum(), a, create_graph=True)
        ((g * vv).sum() + (g * g).sum()).backward()
    assert_close(ours.grad, theirs.grad, 1e-10)


# Average and adaptive pooling --------------------------------------------------------------
AVG_CONFIGS = [
    # (shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1), False, True, None),
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 1), False, False, None),
    ((2, 1, 7, 7), 2, 3, 0, True, True, None),
    ((1, 2, 9, 8), 3, 2, 1, True, False, None),
    ((1, 2, 8, 7), 3, 2, 1, True, True, None),
    ((1, 1, 6, 6), 2, 2, 1, False, True, 3),
]


@pytest.mark.parametrize("cfg", AVG_CONFIGS)
def test_avg_pool2d_matches_torch_and_gradcheck(device, cfg):
    shape, k, s, p, ceil, cip, div = cfg
    kw = dict(
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil,
        count_include_pad=cip,
        divisor_override=div,
    )
    x = _rng(0).standard_normal(shape)
    gradcheck(lambda x: F.avg_pool2d(x, **kw), [x[:1]], device)
    compare_with_torch(
        lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw), [x], device
    )


def test_avg_pool2d_double_backward(device):
    x = _rng(1).standard_normal((1, 2, 5, 6))

    def grad(x):
        y = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return engine.grad((y * y * y).sum(), x, create_graph=True)[0]

    gradcheck(grad, [x], device)


@pytest.mark.parametrize(
    "shape, size",
    [
        ((2, 3, 8, 6), (4, 3)),
        ((1, 2, 7, 5), (3, 2)),
        ((1, 2, 6, 6), 1),
        ((1, 1, 5, 4), (None, 3)),
        ((1, 1, 3, 4), (5, 6)),
    ],
)
def test_adaptive_avg_pool2d(device, shape, size):
    x = _rng(2).standard_normal(shape)
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, size), [x[:1]], device)
    compare_with_torch(
        lambda x: F.adaptive_avg_pool2d(x, size),
        lambda x: TF.adaptive_avg_pool2d(x, size),
        [x],
        device,
    )


# Interpolate and pad -----------------------------------------------------------------------
INTERP_CASES = [
    ((1, 2, 3, 4), dict(scale_factor=2, mode="nearest")),
    ((1, 2, 3, 4), dict(scale_factor=(3, 1), mode="nearest")),
    ((1, 2, 4, 5), dict(size=(7, 3), mode="nearest")),
    ((1, 2, 5, 4), dict(scale_factor=1.5, mode="nearest")),
    ((1, 2, 4, 5), dict(size=(7, 3), mode="nearest-exact")),
    ((2, 3, 7), dict(size=11, mode="nearest")),
    ((1, 2, 4, 5), dict(size=(7, 3), mode="bilinear", align_corners=False)),
    ((1, 2, 3, 4), dict(scale_factor=2, mode="bilinear", align_corners=True)),
    ((1, 1, 4, 3), dict(scale_factor=1.5, mode="bilinear")),
    ((1, 1, 5, 3), dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)),
    ((1, 1, 5, 3), dict(scale_factor=1.7, mode="nearest", recompute_scale_factor=True)),
    ((1, 1, 5, 3), dict(scale_factor=0.6, mode="nearest")),
    ((2, 3, 5), dict(size=8, mode="linear")),
    ((1, 2, 6), dict(scale_factor=0.5, mode="linear", align_corners=True)),
    ((1, 2, 4, 5), dict(size=(7, 3), mode="bicubic")),
    ((1, 1, 3, 4), dict(scale_factor=2, mode="bicubic", align_corners=True)),
    ((1, 1, 5, 4), dict(scale_factor=1.5, mode="bicubic")),
    ((1, 2, 2, 3, 4), dict(size=(3, 4, 2), mode="trilinear")),
    ((1, 1, 2, 2, 3), dict(scale_factor=2, mode="trilinear", align_corners=True)),
    ((1, 1, 2, 3, 2), dict(scale_factor=(2, 1, 1.5), mode="nearest")),
]


@pytest.mark.parametrize("shape, kw", INTERP_CASES)
def test_interpolate_matches_torch_and_gradcheck(device, shape, kw):
    x = _rng(3).standard_normal(shape)
    gradcheck(lambda x: F.interpolate(x, **kw), [x], device)
    compare_with_torch(
        lambda x: F.interpolate(x, **kw), lambda x: TF.interpolate(x, **kw), [x], device
    )


@pytest.mark.parametrize(
    "mode, pads",
    [
        ("constant", (1, 2, 0, 1)),
        ("constant", (-1, 2, 1, -1)),
        ("reflect", (2, 1, 1, 2)),
        ("replicate", (3, 0, 1, 2)),
        ("circular", (1, 2, 2, 1)),
    ],
)
def test_pad_4d_nchw(device, mode, pads):
    x = _rng(4).standard_normal((2, 2, 4, 5))
    kw = dict(mode=mode, value=0.5) if mode == "constant" else dict(mode=mode)
    gradcheck(lambda x: F.pad(x, pads, **kw), [x[:1, :1]], device)
    compare_with_torch(lambda x: F.pad(x, pads, **kw), lambda x: TF.pad(x, pads, **kw), [x], device)


# Errors ------------------------------------------------------------------------------------
def _zeros(device, *shape):
    return engine.zeros(*shape, device=device)


def test_conv_errors_name_the_sizes(device):
    x = _zeros(device, 2, 4, 5, 5)
    with pytest.raises(RuntimeError, match=r"4-D.*\(1, 2, 4, 5, 5\)"):
        F.conv2d(_zeros(device, 1, 2, 4, 5, 5), _zeros(device, 3, 4, 3, 3))
    with pytest.raises(RuntimeError, match=r"weight.*\(3, 4, 9\)"):
        F.conv2d(x, _zeros(device, 3, 4, 9))
    with pytest.raises(RuntimeError, match="4 channels.*expects 3"):
        F.conv2d(x, _zeros(device, 6, 3, 3, 3))
    with pytest.raises(RuntimeError, match="divisible by groups"):
        F.conv2d(x, _zeros(device, 3, 2, 3, 3), groups=2)
    with pytest.raises(RuntimeError, match=r"output size \(-1, -1\).*\(2, 4, 5, 5\)"):
        F.conv2d(x, _zeros(device, 2, 4, 7, 7))
    with pytest.raises(RuntimeError, match=r"bias must have shape \(2,\)"):
        F.conv2d(x, _zeros(device, 2, 4, 3, 3), _zeros(device, 3))
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(x, _zeros(device, 2, 4, 3, 3), stride=0)
    with pytest.raises(TypeError, match="float64"):
        F.conv2d(x, _zeros(device, 2, 4, 3, 3).double())


def test_conv_transpose_and_pool_errors(device):
    x = _zeros(device, 1, 2, 4, 4)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, _zeros(device, 2, 3, 3, 3), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match="2 channels.*expects 3"):
        F.conv_transpose2d(x, _zeros(device, 3, 3, 3, 3))
    with pytest.raises(RuntimeError, match="output size"):
        F.conv_transpose2d(_zeros(device, 1, 2, 1, 1), _zeros(device, 2, 1, 1, 1), padding=1)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match=r"output size \(0, 0\)"):
        F.max_pool2d(x, 5)
    with pytest.raises(RuntimeError, match=r"4-D"):
        F.avg_pool2d(_zeros(device, 4, 4), 2)
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="unsupported mode"):
        F.interpolate(x, size=3, mode="area")
    with pytest.raises(ValueError, match="trilinear expects a 5-D"):
        F.interpolate(x, size=3, mode="trilinear")


# State ownership ------------------------------------------------------------------------------
@winograd.set_enabled(False)  # the im2col path's columns (Winograd keeps none)
def test_conv_node_owns_its_columns_until_its_graph_is_freed():
    # The columns a Conv2d node keeps for its weight gradient are its own: other convs in
    # between (which refill the kernels' scratch) leave them alone; once the graph is freed the
    # buffer is handed back and reused by the next conv, whose gradients stay right.
    rng = np.random.default_rng(0)
    x = engine.tensor(rng.standard_normal((3, 4, 9, 8)).astype(np.float32))
    w = engine.tensor(rng.standard_normal((5, 4, 3, 3)).astype(np.float32), requires_grad=True)
    geo = geometry.conv2d(x.shape, w.shape, 1, 1)
    for step in range(3):
        y = F.conv2d(x, w, padding=1)
        assert y.grad_fn.cols is not None
        F.conv2d(x * 2, w, padding=1)  # another conv in between
        gy = np.full(y.shape, step + 1.0, np.float32)
        w.grad = None
        y.backward(engine.tensor(gy))
        want = cpu.conv2d_backward_weight(gy, x.numpy(), geo)  # columns recomputed
        np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-4, atol=1e-4)
    assert cpu._workspace.spare is not None


def test_max_pool_node_owns_its_argmax():
    x = engine.tensor(np.arange(32.0).reshape(1, 2, 4, 4), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    F.max_pool2d(x * -1, 2)  # another pooling in between changes nothing
    np.testing.assert_array_equal(y.grad_fn.argmax, np.full((1, 2, 2, 2), 3))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy().reshape(-1)[idx.numpy().reshape(2, -1)[0]], 1)
