"""Scans (cumsum, cumprod, cummax, cummin, logcumsumexp) and the reductions of issue 15
(std_mean, var_mean, count_nonzero, logaddexp) against PyTorch and float64 central differences."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_gradients, helper_test_op, lib, random_inputs

import engine

# name: (input shapes, fn written once for both libraries)
CASES = {
    "cumsum": ([(3, 4)], lambda x: x.cumsum(1)),
    "cumsum_dim0_top_level": ([(3, 4)], lambda x: lib(x).cumsum(x, 0)),
    "cumsum_neg_dim_3d": ([(2, 3, 4)], lambda x: x.cumsum(-2)),
    "cumsum_dtype": ([(3, 4)], lambda x: x.cumsum(1, dtype=lib(x).float64)),
    "cumsum_0d": ([()], lambda x: x.cumsum(0)),
    "cumprod": ([(3, 4)], lambda x: x.cumprod(1)),
    "cumprod_dim0_top_level": ([(4, 3)], lambda x: lib(x).cumprod(x, 0)),
    "cummax": ([(3, 5)], lambda x: x.cummax(1)),
    "cummax_dim0_top_level": ([(5, 2)], lambda x: lib(x).cummax(x, 0)),
    "cummin": ([(3, 5)], lambda x: x.cummin(-1)),
    "cummin_3d": ([(2, 6, 3)], lambda x: lib(x).cummin(x, 1)),
    "logcumsumexp": ([(3, 5)], lambda x: x.logcumsumexp(1)),
    "logcumsumexp_dim0_top_level": ([(6, 2)], lambda x: lib(x).logcumsumexp(x, 0)),
    "logaddexp": ([(2, 3), (3,)], lambda a, b: a.logaddexp(b)),
    "logaddexp_top_level": ([(2, 1), (1, 3)], lambda a, b: lib(a).logaddexp(a, b)),
    "var_mean": ([(3, 4)], lambda x: lib(x).var_mean(x)),
    "var_mean_dim_keepdim": ([(3, 4)], lambda x: lib(x).var_mean(x, 1, keepdim=True)),
    "var_mean_correction": ([(3, 4)], lambda x: lib(x).var_mean(x, (0, 1), correction=0)),
    "std_mean": ([(3, 4)], lambda x: lib(x).std_mean(x, 0)),
    "std_mean_unbiased_false": ([(2, 3, 4)], lambda x: lib(x).std_mean(x, -1, False)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_scan_or_reduction(name, device):
    shapes, fn = CASES[name]
    helper_test_op(shapes, fn, device=device)


ZEROS = np.array(
    [[1.5, 0.0, 2.0, -1.0, 0.5], [0.0, 2.0, 0.0, 3.0, 1.0], [1.0, -2.0, 0.5, 2.0, 0.0]]
)


def test_cumprod_gradient_with_zeros(device):
    """Rows with one zero, two zeros, a leading and a trailing zero: torch's gradient."""
    helper_test_op([], lambda x: x.cumprod(1), inputs=[ZEROS], device=device, gradcheck=False)
    helper_test_op([], lambda x: x.cumprod(0), inputs=[ZEROS], device=device, gradcheck=False)


def test_cumprod_double_backward_at_zero_raises(device):
    x = engine.tensor(ZEROS, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward"):
        engine.grad(x.cumprod(1).sum(), [x], create_graph=True)


def test_cum_extremum_ties_and_nan_take_the_latest_index(device, torch):
    a = np.array([1.0, 3.0, 3.0, 2.0, 3.0, np.nan, 1.0, np.nan], np.float32)
    for name in ("cummax", "cummin"):
        ours = getattr(engine.tensor(a, device=device), name)(0)
        theirs = getattr(torch.from_numpy(a), name)(0)
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())


def test_logcumsumexp_is_stable(device, torch):
    a = np.array([[-1000.0, 0.0, -1e30, 80.0, 85.0]], np.float32)
    helper_test_op([], lambda x: x.logcumsumexp(1), inputs=[a], device=device, gradcheck=False)


def test_integer_scans_follow_torch_dtypes(device):
    ints = np.array([[1, 2, -3], [0, 7, 4]], dtype=np.int32)
    for fn in (lambda x: x.cumsum(1), lambda x: x.cumprod(0), lambda x: x.cummax(1),
               lambda x: (x > 0).cumsum(0)):  # fmt: skip
        helper_test_op([], fn, inputs=[ints], device=device)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: lib(x).count_nonzero(x),
        lambda x: x.count_nonzero(1),
        lambda x: lib(x).count_nonzero(x, (0, 1)),
        lambda x: x.count_nonzero(dim=-1),
    ],
)
def test_count_nonzero(fn, device):
    helper_test_op([], fn, inputs=[np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])], device=device,
                   grad=False)  # fmt: skip


@pytest.mark.parametrize(
    "op",
    [
        lambda x: x.cumsum(1),
        lambda x: x.cumprod(1),
        lambda x: x.cummax(0).values,
        lambda x: x.logcumsumexp(1),
        lambda x: x.logaddexp(x * x),
    ],
)
def test_double_backward(op, device):
    def grad_of(x):
        (gx,) = engine.grad((op(x) ** 2).sum(), [x], create_graph=True)
        return gx

    check_gradients(grad_of, random_inputs([(3, 4)], 0.5, 2.0, seed=2), device)


def test_logcumsumexp_of_integers_raises_as_torch(device):
    with pytest.raises(RuntimeError, match="floating-point.*int64"):
        engine.arange(3, device=device).logcumsumexp(0)
