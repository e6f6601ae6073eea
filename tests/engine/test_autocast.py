"""float16/bfloat16 tensors and engine.autocast: dtypes per op against torch.autocast (CPU,
bfloat16) and against PyTorch's documented CUDA float16 lists; values against float32 within the
dtype's rounding; gradients of float32 parameters arrive in float32."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import layers
from engine.dtypes import BFLOAT16
from tests.helpers import requires_torch

torch = pytest.importorskip("torch")

LOW = {"float16": np.float16, "bfloat16": BFLOAT16}
# Relative rounding of one value (unit roundoff) per dtype, and a sum of K products.
EPS = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


def _bf16_skip(device, dtype):
    if device == "cuda" and dtype == "bfloat16":
        pytest.skip(
            "the CuPy stand-in refuses bfloat16 arrays (CuPy 14's minimal bfloat16 is not modelled)"
        )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_matmul_emulates_tensor_cores(device, dtype):
    """Inputs rounded to the dtype, float32 accumulation, one rounding of the output: exactly
    float32 BLAS on the rounded inputs, then rounded (what torch does on the CPU too)."""
    _bf16_skip(device, dtype)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((33, 70)).astype(np.float32)
    b = rng.standard_normal((70, 9)).astype(np.float32)
    ea, eb = (engine.tensor(v, device=device).to(dtype) for v in (a, b))
    y = (ea @ eb).to("cpu")
    assert str(y.dtype) == dtype
    want = a.astype(LOW[dtype]).astype(np.float32) @ b.astype(LOW[dtype]).astype(np.float32)
    np.testing.assert_allclose(y.float().numpy(), want, rtol=EPS[dtype], atol=1e-6)
    t = torch.tensor(a).to(getattr(torch, dtype)) @ torch.tensor(b).to(getattr(torch, dtype))
    np.testing.assert_allclose(y.float().numpy(), t.float().numpy(), rtol=2 * EPS[dtype], atol=1e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_conv_and_pool_with_gradients(device, dtype):
    _bf16_skip(device, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    ex = engine.tensor(x, device=device).to(dtype).requires_grad_()
    ew = engine.tensor(w, device=device).to(dtype).requires_grad_()
    y = F.max_pool2d(F.conv2d(ex, ew, padding=1), 2)
    (y.float() ** 2).sum().backward()
    tdt = getattr(torch, dtype)
    tx = torch.tensor(x).to(tdt).float().requires_grad_()
    tw = torch.tensor(w).to(tdt).float().requires_grad_()
    ty = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(tx, tw, padding=1).to(tdt), 2)
    (ty.float() ** 2).sum().backward()
    assert str(y.dtype) == str(ex.grad.dtype) == str(ew.grad.dtype) == dtype
    np.testing.assert_allclose(y.float().to("cpu").numpy(), ty.float().detach().numpy(), atol=0)
    scale = np.abs(tw.grad.numpy()).max()
    np.testing.assert_allclose(
        ew.grad.float().to("cpu").numpy(), tw.grad.numpy(), atol=8 * EPS[dtype] * scale
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_elementwise_and_reductions(device, dtype):
    _bf16_skip(device, dtype)
    x = engine.tensor([[0.5, -1.25, 3.0], [2.0, 0.1, -0.7]], device=device).to(dtype)
    x.requires_grad_()
    y = (F.relu(x) * 2 + x.tanh()).exp().sum(1).mean()
    y.backward()
    assert str(y.dtype) == str(x.grad.dtype) == dtype
    tx = torch.tensor([[0.5, -1.25, 3.0], [2.0, 0.1, -0.7]]).to(getattr(torch, dtype))
    tx.requires_grad_()
    ty = (torch.relu(tx) * 2 + tx.tanh()).exp().sum(1).mean()
    ty.backward()
    np.testing.assert_allclose(float(y.item()), float(ty.item()), rtol=8 * EPS[dtype])
    np.testing.assert_allclose(
        x.grad.float().to("cpu").numpy(), tx.grad.float().numpy(), rtol=8 * EPS[dtype], atol=1e-3
    )
    # Promotion as PyTorch: a low dtype meeting float32 computes in float32; a number keeps it.
    assert (x + engine.ones(3, device=device)).dtype == np.float32
    assert str((x * 2.5).dtype) == dtype
    assert (engine.ones(3, dtype=dtype).to(engine.float16)).dtype == np.float16  # bf16 <-> f16


def test_bfloat16_dtype_names():
    x = engine.zeros(2, dtype=engine.bfloat16)
    assert x.dtype == BFLOAT16 and x.is_floating_point()
    assert engine.ones(2).bfloat16().dtype == BFLOAT16
    assert x.requires_grad_().requires_grad


# Autocast ---------------------------------------------------------------------------------
def _inputs(lib, device):
    rng = np.random.default_rng(2)
    arr = {
        "x": rng.standard_normal((4, 8)),
        "w": rng.standard_normal((5, 8)),
        "img": rng.standard_normal((2, 3, 8, 8)),
        "k": rng.standard_normal((4, 3, 3, 3)),
        "kt": rng.standard_normal((3, 4, 3, 3)),
    }
    out = {n: lib.tensor(v.astype(np.float32), device=device) for n, v in arr.items()}
    out["t"] = lib.tensor([0, 1, 2, 3], device=device)
    return out


def _cases(lib, device="cpu"):
    Fn = F if lib is engine else torch.nn.functional
    i = _inputs(lib, device)
    x, w, img, k, kt, t = (i[n] for n in ("x", "w", "img", "k", "kt", "t"))
    return {
        "matmul": lambda: x @ w.mT,
        "linear": lambda: Fn.linear(x, w),
        "conv2d": lambda: Fn.conv2d(img, k),
        "conv_transpose2d": lambda: Fn.conv_transpose2d(img, kt),
        "conv1d": lambda: Fn.conv1d(img[:, :, 0], k[:, :, 0]),
        "bmm": lambda: lib.bmm(x[None], w.mT[None]),
        "softmax": lambda: Fn.softmax(x, 1),
        "softmax_of_low": lambda: Fn.softmax(Fn.linear(x, w), 1),
        "log_softmax_of_low": lambda: Fn.log_softmax(Fn.linear(x, w), 1),
        "exp_of_low": lambda: Fn.linear(x, w).exp(),
        "sum_of_low": lambda: Fn.linear(x, w).sum(),
        "relu_of_low": lambda: Fn.relu(Fn.linear(x, w)),
        "low_plus_float32": lambda: Fn.linear(x, w) + lib.ones(5, device=device),
        "mse_loss": lambda: Fn.mse_loss(Fn.linear(x, w), lib.zeros(4, 5, device=device)),
        "l1_loss": lambda: Fn.l1_loss(Fn.linear(x, w), lib.zeros(4, 5, device=device)),
        "cross_entropy": lambda: Fn.cross_entropy(Fn.linear(x, w), t),
        "nll_loss": lambda: Fn.nll_loss(Fn.linear(x, w), t),
        "bce_with_logits": lambda: Fn.binary_cross_entropy_with_logits(
            Fn.linear(x, w), lib.zeros(4, 5, device=device)
        ),
        "binary_cross_entropy": lambda: Fn.binary_cross_entropy(
            Fn.linear(x, w).sigmoid(), lib.zeros(4, 5, device=device)
        ),
        "smooth_l1_loss": lambda: Fn.smooth_l1_loss(
            Fn.linear(x, w), lib.zeros(4, 5, device=device)
        ),
        "max_pool_of_low": lambda: Fn.max_pool2d(Fn.conv2d(img, k), 2),
        "float64_linear": lambda: Fn.linear(x.double(), w.double()),
    }


def _name(dtype) -> str:
    return str(dtype).replace("torch.", "")


@requires_torch
def test_autocast_cpu_bfloat16_matches_torch_op_by_op():
    ours, theirs = _cases(engine), _cases(torch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = {n: _name(f().dtype) for n, f in theirs.items()}
    with engine.autocast("cpu", dtype=engine.bfloat16):
        got = {n: _name(f().dtype) for n, f in ours.items()}
    assert got == want
    assert want["linear"] == "bfloat16" and want["cross_entropy"] == "float32"  # not vacuous


# PyTorch's "CUDA Ops that can autocast to float16 / float32" (Autocast Op Reference).
CUDA_FLOAT16 = ["matmul", "linear", "conv2d", "conv_transpose2d", "conv1d", "bmm"]
CUDA_FLOAT32 = [
    "softmax_of_low", "log_softmax_of_low", "exp_of_low", "sum_of_low", "mse_loss", "l1_loss",
    "cross_entropy", "nll_loss", "bce_with_logits", "smooth_l1_loss",
]  # fmt: skip


def test_autocast_cuda_float16_follows_torch_cuda_lists(device):
    if device != "cuda":
        pytest.skip("CUDA autocast casts cuda tensors")
    cases = _cases(engine, device)
    with engine.autocast("cuda"):  # float16, PyTorch's CUDA default
        got = {}
        for n, f in cases.items():
            if n == "binary_cross_entropy":
                with pytest.raises(RuntimeError, match="unsafe to autocast"):
                    f()
                continue
            got[n] = _name(f().dtype)
    assert {n: got[n] for n in CUDA_FLOAT16} == dict.fromkeys(CUDA_FLOAT16, "float16")
    assert {n: got[n] for n in CUDA_FLOAT32} == dict.fromkeys(CUDA_FLOAT32, "float32")
    assert got["relu_of_low"] == got["max_pool_of_low"] == "float16"  # not on a list
    assert got["low_plus_float32"] == "float32" and got["float64_linear"] == "float64"


def test_autocast_keeps_float32_parameters_and_their_float32_gradients(device):
    lin = layers.Linear(8, 5).to(device)
    x = engine.randn(4, 8, device=device)
    t = engine.tensor([0, 1, 2, 3], device=device)
    with engine.autocast(engine.device(device).type, dtype=engine.float16):
        y = lin(x)
        loss = F.cross_entropy(y, t)
    assert y.dtype == np.float16 and loss.dtype == np.float32
    loss.backward()
    assert lin.weight.dtype == lin.weight.grad.dtype == np.float32
    assert lin.bias.grad.dtype == np.float32
    # The float32 gradient equals the float32 run's within float16 rounding.
    g16 = lin.weight.grad.to("cpu").numpy().copy()
    lin.zero_grad()
    F.cross_entropy(lin(x), t).backward()
    np.testing.assert_allclose(g16, lin.weight.grad.to("cpu").numpy(), atol=5e-3)


def test_autocast_nesting_disabling_and_decorator():
    x, w = engine.randn(3, 4), engine.randn(2, 4)
    with engine.autocast("cpu"):
        assert engine.is_autocast_enabled("cpu") and not engine.is_autocast_enabled("cuda")
        assert F.linear(x, w).dtype == BFLOAT16  # the cpu default, as PyTorch
        with engine.autocast("cpu", enabled=False):
            assert F.linear(x, w).dtype == np.float32
        with engine.autocast("cpu", dtype=engine.float16):
            assert F.linear(x, w).dtype == np.float16
        assert F.linear(x, w).dtype == BFLOAT16
    assert F.linear(x, w).dtype == np.float32 and not engine.is_autocast_enabled("cpu")

    @engine.autocast("cpu", dtype=engine.float16)
    def f(a, b):
        return F.linear(a, b)

    assert f(x, w).dtype == np.float16 and F.linear(x, w).dtype == np.float32
    with engine.autocast("cuda"):  # another device type leaves cpu tensors alone
        assert F.linear(x, w).dtype == np.float32
    with pytest.raises(ValueError, match="dtype must be engine.float16 or engine.bfloat16"):
        engine.autocast("cpu", dtype=engine.float64)
    with pytest.raises(ValueError, match="device_type must be 'cpu' or 'cuda'"):
        engine.autocast("tpu")


def test_double_backward_under_autocast_wgan_gp_style():
    """The gradient penalty's create_graph backward runs under autocast and reaches the float32
    weights, as PyTorch's (torch.autocast on the CPU, bfloat16)."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((4, 6)).astype(np.float32)
    w0 = rng.standard_normal((3, 6)).astype(np.float32)
    grads = []
    for lib, ac in ((engine, engine.autocast), (torch, torch.autocast)):
        x = lib.tensor(x0, requires_grad=True)
        w = lib.tensor(w0, requires_grad=True)
        with ac("cpu", dtype=lib.bfloat16):
            out = (lib.tanh(x @ w.mT)).sum()
            (g,) = (engine.grad if lib is engine else torch.autograd.grad)(
                out, x, create_graph=True
            )
            pen = ((g.float().norm(2, dim=1) - 1) ** 2).mean()
        pen.backward()
        grads.append(np.asarray(w.grad.detach().float().numpy()))
        assert str(w.grad.dtype).replace("torch.", "") == "float32"
    np.testing.assert_allclose(grads[0], grads[1], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("transposed", [False, True])
def test_autocast_conv_gradients_with_bias_match_float32(device, transposed):
    """The low-dtype conv backward shares its transposed gy for the input, weight and bias
    gradients on cuda (as float32's does): all three within float16 rounding of float32's."""
    low = np.float16 if device.startswith("cuda") else BFLOAT16
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    w0 = (rng.standard_normal((4, 5, 4, 4)) * 0.2).astype(np.float32)
    b0 = rng.standard_normal(5 if transposed else 4).astype(np.float32)
    if not transposed:
        w0 = w0.transpose(1, 0, 2, 3).copy()[:4]
    conv = F.conv_transpose2d if transposed else F.conv2d
    grads = []
    for dtype in (low, None):
        x, w, b = (engine.tensor(a, device=device, requires_grad=True) for a in (x0, w0, b0))
        with engine.autocast(device.split(":")[0], dtype=dtype or low, enabled=dtype is not None):
            y = conv(x, w, b, stride=2, padding=1)
        (y.float() * y.float()).sum().backward()
        grads.append([t.grad.to("cpu").numpy() for t in (x, w, b)])
        assert {t.grad.dtype for t in (x, w, b)} == {np.dtype(np.float32)}
    tol = 2.0**-6 if low == BFLOAT16 else 2.0**-9
    for g16, g32 in zip(*grads, strict=True):
        np.testing.assert_allclose(g16, g32, rtol=8 * tol, atol=8 * tol * np.abs(g32).max())
