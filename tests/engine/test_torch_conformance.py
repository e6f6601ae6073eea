"""Regression tests for the defects an external PyTorch-conformance suite found (issue 15).

Each test failed on the code before its fix: a wrong value, gradient or dtype, an error on input
PyTorch accepts, or input accepted that PyTorch rejects. Values and gradients are compared with
PyTorch (the oracle) and, where differentiable, gradchecked in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_gradients, helper_test_op, requires_torch, torch

import engine
import engine.functional as F


def _same(ours, theirs, what="values"):
    """Equal to the torch tensor, NaN and +-inf included, dtype and shape too."""
    t = theirs.detach().numpy()
    a = ours.numpy()
    assert a.dtype == t.dtype and a.shape == t.shape, (
        f"{what}: {a.dtype}{a.shape} vs {t.dtype}{t.shape}"
    )
    np.testing.assert_allclose(a, t, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


# Circular padding with negative pads ---------------------------------------------------------
@requires_torch
@pytest.mark.parametrize(
    "pad", [(1, -2), (-1, 2), (-2, -1), (-1, -1), (5, 0), (0, 5), (2, -3), (1, -1, -1, 2)], ids=str
)
def test_circular_pad_crops_then_wraps_like_torch(pad, device):
    def fn(x):
        mod = F if isinstance(x, engine.Tensor) else torch.nn.functional
        return mod.pad(x, pad, mode="circular")

    helper_test_op([(1, 2, 5) if len(pad) == 2 else (1, 2, 3, 5)], fn, device=device)


@requires_torch
def test_circular_pad_issue_example(device):
    x = engine.tensor(np.arange(5.0), device=device).reshape(1, 1, 5)
    assert F.pad(x, (1, -2), mode="circular").tolist() == [[[2.0, 0.0, 1.0, 2.0]]]


@pytest.mark.parametrize("pad", [(6, 0), (0, 6), (-4, 3), (3, -3)], ids=str)
def test_circular_pad_wrapping_more_than_once_raises(pad, device):
    x = engine.zeros(1, 1, 5, device=device)
    with pytest.raises(ValueError, match="wraps around more than once"):
        F.pad(x, pad, mode="circular")


# x ** y with a tensor exponent: PyTorch's gradients at the edges ------------------------------
@requires_torch
def test_pow_tensor_exponent_gradient_edge_cases(device):
    #      x=0,y=0  x=0,y<0  x=0,y>0  x<0,y frac  x>0   x<0,y int  x=0,y frac
    base = [0.0, 0.0, 0.0, -2.0, 2.0, -2.0, 0.0]
    expo = [0.0, -1.0, 2.0, 1.5, 0.5, 2.0, 0.5]
    a = engine.tensor(base, device=device, requires_grad=True)
    b = engine.tensor(expo, device=device, requires_grad=True)
    ta, tb = torch.tensor(base, requires_grad=True), torch.tensor(expo, requires_grad=True)
    with np.errstate(all="ignore"):
        (a**b).sum().backward()
    (ta**tb).sum().backward()
    _same(a.grad, ta.grad, "d/dx")  # 0 at x = y = 0 (was NaN)
    _same(b.grad, tb.grad, "d/dy")  # -inf at x=0, y<0 and NaN for x<0 (were NaN and 0)
    assert a.grad.tolist()[0] == 0.0 and b.grad.tolist()[1] == -np.inf
    assert np.isnan(b.grad.tolist()[3]) and np.isnan(b.grad.tolist()[5])


def test_pow_tensor_exponent_gradcheck(device):
    check_gradients(
        lambda a, b: a**b, [np.array([0.5, 1.5, 2.0]), np.array([-1.0, 0.5, 2.0])], device
    )


# var / std with correction >= N --------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize(
    "data, correction, dim",
    [
        ([1.0, 2.0, 4.0], 3, None),
        ([1.0, 2.0, 4.0], 5, None),
        ([1.0], 1, None),
        ([[1.0, 2.0], [3.0, 3.0]], 2, 1),
        ([[1.0, 2.0, 0.5], [3.0, 3.0, 1.0]], 2, 0),
        ([[1.0, 2.0, 0.5], [3.0, 3.0, 1.0]], 1, 1),
    ],
)
def test_var_std_with_correction_at_or_past_n_give_inf(name, data, correction, dim, device):
    x = engine.tensor(data, device=device, requires_grad=True)
    t = torch.tensor(data, requires_grad=True)
    with np.errstate(all="ignore"):
        out = getattr(x, name)(dim, correction=correction)
        out.sum().backward()
    expected = getattr(t, name)(dim, correction=correction)
    expected.sum().backward()
    _same(out, expected)  # inf where PyTorch's is (was NaN)
    if name == "std" or dim is not None or len(data) > correction:
        _same(x.grad, t.grad, "gradient")
    else:
        # PyTorch's full-reduction var backward drops the sign at n - correction <= 0 (inf for
        # every x != mean); ours keeps 2 (x - mean) / 0's sign, as both do with a dim.
        d = np.array(data) - np.mean(data)
        expected_grad = np.where(d == 0, np.nan, np.sign(d) * np.inf).astype(np.float32)
        np.testing.assert_array_equal(x.grad.numpy(), expected_grad)


def test_var_gradcheck_with_correction(device):
    for correction, dim in ((0, None), (1, 1), (2, 0)):
        check_gradients(
            lambda x, dim=dim, correction=correction: x.var(dim, correction=correction),
            [np.random.default_rng(0).standard_normal((3, 4))],
            device,
        )


# Errors on valid input ------------------------------------------------------------------------
ZERO_D = {
    "sum(0)": lambda x: x.sum(0),
    "sum(-1)": lambda x: x.sum(-1),
    "sum(-1, keepdim)": lambda x: x.sum(-1, keepdim=True),
    "mean(0)": lambda x: x.mean(0),
    "prod(-1)": lambda x: x.prod(-1),
    "prod(0)": lambda x: x.prod(0),
    "logsumexp(0)": lambda x: x.logsumexp(0),
    "logsumexp(-1)": lambda x: x.logsumexp(-1),
    "amax(-1)": lambda x: x.amax(-1),
    "max(0).values": lambda x: x.max(0).values,
    "min(-1).values": lambda x: x.min(-1).values,
    "norm(2, 0)": lambda x: x.norm(2, 0),
    "var(0, correction=0)": lambda x: x.var(0, correction=0),
    "squeeze(-1)": lambda x: x.squeeze(-1),
    "squeeze(0)": lambda x: x.squeeze(0),
    "flip(0)": lambda x: x.flip(0),
    "softmax(0)": lambda x: (F if isinstance(x, engine.Tensor) else torch).softmax(x, 0),
    "log_softmax(-1)": lambda x: (F if isinstance(x, engine.Tensor) else torch).log_softmax(x, -1),
    "leaky_relu": lambda x: (F if isinstance(x, engine.Tensor) else torch.nn.functional).leaky_relu(
        x, 0.1
    ),
}


@requires_torch
@pytest.mark.parametrize("name", list(ZERO_D))
def test_zero_d_tensor_takes_dim_0_and_minus_1(name, device):
    """PyTorch treats a 0-d tensor's dim 0 and -1 as its only dimension; forward and backward."""
    for value in (1.5, -0.7):
        helper_test_op([()], ZERO_D[name], device=device, inputs=[np.array(value)])


@requires_torch
def test_zero_d_max_indices_and_argmax(device):
    x = engine.tensor(2.0, device=device)
    values, indices = x.max(0)
    assert values.item() == 2.0 and indices.item() == 0 and indices.dtype == np.int64
    assert x.argmax(-1).item() == 0 and x.argmin(0).shape == ()


@pytest.mark.parametrize("fn", [lambda x: x.sum(1), lambda x: x.sum(-2), lambda x: x.squeeze(1)])
def test_zero_d_tensor_rejects_other_dims(fn, device):
    with pytest.raises(IndexError, match=r"expected in \[-1, 0\]"):
        fn(engine.tensor(2.0, device=device))


@requires_torch
@pytest.mark.parametrize("dim", [1, -1, 0])
def test_normalize_and_norm_with_p_0_count_nonzeros(dim, device):
    data = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, -3.0]], dtype=np.float32)
    x = engine.tensor(data, device=device, requires_grad=True)
    t = torch.tensor(data, requires_grad=True)
    _same(F.normalize(x, p=0, dim=dim), torch.nn.functional.normalize(t, p=0, dim=dim))
    n, tn = x.norm(0, dim), t.norm(0, dim)
    _same(n, tn)
    n.sum().backward()
    tn.sum().backward()
    assert t.grad is None or not t.grad.any()  # PyTorch: no gradient flows through a 0-norm
    assert x.grad is None or not x.grad.numpy().any()


def test_normalize_p_0_gradcheck(device):
    check_gradients(lambda x: F.normalize(x, p=0, dim=1), [np.array([[1.0, -2.0, 0.5]])], device)


@requires_torch
def test_int32_or_python_int_wraps_like_torch(device):
    data = np.array([1, -2, 7], dtype=np.int32)
    ours = engine.tensor(data, device=device) | 0xFFFFFFFF
    theirs = torch.tensor(data) | 0xFFFFFFFF
    _same(ours, theirs)


# Input PyTorch rejects ------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [(0, 0), (1, -1), (0, 1, 0)], ids=str)
def test_flip_rejects_a_repeated_dim(dims, device):
    with pytest.raises(RuntimeError, match="appears multiple times"):
        engine.ones(2, 3, device=device).flip(dims)


def test_linspace_rejects_bool(device):
    with pytest.raises(TypeError, match="linspace: dtype bool"):
        engine.linspace(0, 1, 3, dtype="bool", device=device)
    assert engine.linspace(0, 5, 3, dtype="int64", device=device).tolist() == [0, 2, 5]


# Indexing: an int is basic indexing in PyTorch, also beside index arrays ------------------------
_MASK = [[True, False, True, True, False], [False, False, True, False, True]] * 2
INDEXING = {
    "int, slice, array": ((2, 5, 6), lambda x, L: x[1, :, L([0, 2, 3])]),
    "0-d tensor, slice, array": ((2, 5, 6), lambda x, L: x[L(1), :, L([0, 2, 3])]),
    "array, slice, int": ((2, 5, 6), lambda x, L: x[L([0, 1, 1]), :, 1]),
    "None, int, slice, array": ((2, 5, 6), lambda x, L: x[None, 1, :, L([0, 2])]),
    "ellipsis, int, array": ((2, 5, 6), lambda x, L: x[..., 1, L([0, 2])]),
    "array, int, array": ((2, 5, 6), lambda x, L: x[L([0, 1]), 1, L([0, 2])]),
    "int, slice, array, int": ((2, 3, 4, 5), lambda x, L: x[0, :, L([0, 1, 0]), 1]),
    "array, slice, int, array": ((2, 3, 4, 5), lambda x, L: x[L([0, 1]), :, 1, L([0, 1])]),
    "int, None, slice, array": ((2, 3, 4, 5), lambda x, L: x[1, None, :, L([0, 2])]),
    "int, slice, mask": ((2, 3, 4, 5), lambda x, L: x[1, :, L(_MASK)]),
    "int, ellipsis, 2-d array, int": ((2, 3, 4, 5), lambda x, L: x[1, ..., L([[0], [2]]), 2]),
}


@requires_torch
@pytest.mark.parametrize("name", list(INDEXING))
def test_indexing_follows_torch_with_ints_beside_index_arrays(name, device):
    shape, fn = INDEXING[name]

    def op(x):
        def lib_index(v):
            if isinstance(x, engine.Tensor):
                return engine.tensor(v, device=x.device)
            return torch.tensor(v)

        return fn(x, lib_index)

    helper_test_op([shape], op, device=device)


@requires_torch
@pytest.mark.parametrize("name", list(INDEXING))
def test_setitem_follows_torch_with_ints_beside_index_arrays(name, device):
    shape, fn = INDEXING[name]
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    ours, theirs = engine.tensor(data, device=device), torch.tensor(data)
    target = fn(theirs, torch.tensor)
    values = np.arange(target.numel(), dtype=np.float32).reshape(target.shape) + 1000

    class Recorder:  # capture the index `fn` builds, then assign through it
        def __getitem__(self, index):
            return index

    def assign(t, lib_index, v):
        t[fn(Recorder(), lib_index)] = v

    assign(ours, lambda v: engine.tensor(v, device=device), engine.tensor(values, device=device))
    assign(theirs, torch.tensor, torch.tensor(values))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
