"""Every core op's forward and gradient against float64 central differences and PyTorch.

Each case goes through `helper_test_op`, which gradchecks in float64 first (no torch needed) and
then compares values and gradients with PyTorch in float32. Shapes cover broadcasting, size-1
and empty dimensions; they stay small because gradcheck costs two forwards per input element.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
from helpers import helper_test_op, index_like, lib, requires_torch, torch

import engine

# Elementwise unary ----------------------------------------------------------------------------
UNARY = {
    "neg": (lambda x: -x, None),
    "exp": (lambda x: x.exp(), None),
    "log": (lambda x: x.log(), (0.1, 3.0)),
    "sqrt": (lambda x: x.sqrt(), (0.1, 3.0)),
    "rsqrt": (lambda x: x.rsqrt(), (0.1, 3.0)),
    "log1p": (lambda x: x.log1p(), (-0.5, 3.0)),
    "abs": (lambda x: x.abs(), None),
    "abs_builtin": (lambda x: abs(x), None),
    "sin": (lambda x: x.sin(), None),
    "cos": (lambda x: x.cos(), None),
    "tanh": (lambda x: x.tanh(), None),
    "sigmoid": (lambda x: x.sigmoid(), (-6.0, 6.0)),
    "relu": (lambda x: x.relu(), None),
    "square": (lambda x: x.square(), None),
    "erf": (lambda x: x.erf(), None),
    "clip": (lambda x: x.clip(-0.5, 0.7), None),
    "clamp_min": (lambda x: x.clamp(min=0.2), None),
    "clamp_max": (lambda x: x.clamp(max=-0.1), None),
    "lerp": (lambda x: x.lerp(x * x, 0.3), None),
    "top_level_exp": (lambda x: lib(x).exp(x), None),
    "top_level_sigmoid": (lambda x: lib(x).sigmoid(x), None),
    "top_level_tanh": (lambda x: lib(x).tanh(x), None),
}


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 0, 3)], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, shape, device):
    fn, bounds = UNARY[name]
    low, high = bounds or (-2.0, 2.0)
    helper_test_op([shape], fn, device=device, low=low, high=high)


# Elementwise binary with broadcasting ---------------------------------------------------------
BROADCAST_SHAPES = [
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((2, 1), (1, 3)),
    ((), (2, 3)),
    ((3, 1, 2), (4, 1)),
    ((1,), (2, 1)),
    ((0, 3), (1, 3)),
]

BINARY = {
    "add": (lambda a, b: a + b, None),
    "sub": (lambda a, b: a - b, None),
    "mul": (lambda a, b: a * b, None),
    "div": (lambda a, b: a / b, (0.5, 2.0)),
    "pow": (lambda a, b: a**b, (0.5, 2.0)),
    "maximum": (lambda a, b: lib(a).maximum(a, b), None),
    "minimum": (lambda a, b: lib(a).minimum(a, b), None),
    "top_level_add": (lambda a, b: lib(a).add(a, b), None),
    "top_level_mul": (lambda a, b: lib(a).mul(a, b), None),
    "where": (lambda a, b: lib(a).where(a > b, a, b * 2), None),
}


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcast(name, shapes, device):
    fn, bounds = BINARY[name]
    low, high = bounds or (-2.0, 2.0)
    helper_test_op(shapes, fn, device=device, low=low, high=high)


SCALAR = {
    "x+2": (lambda x: x + 2, None),
    "2+x": (lambda x: 2 + x, None),
    "x-1.5": (lambda x: x - 1.5, None),
    "1.5-x": (lambda x: 1.5 - x, None),
    "x*3": (lambda x: x * 3, None),
    "3*x": (lambda x: 3 * x, None),
    "x/4": (lambda x: x / 4, None),
    "4/x": (lambda x: 4 / x, (0.5, 2.0)),
    "x**2": (lambda x: x**2, None),
    "x**3": (lambda x: x**3, None),
    "x**0.5": (lambda x: x**0.5, (0.1, 2.0)),
    "x**-1": (lambda x: x**-1, (0.5, 2.0)),
    "2**x": (lambda x: 2**x, None),
    "x**0": (lambda x: x**0, None),
}


@pytest.mark.parametrize("name", list(SCALAR))
def test_python_scalars_on_either_side(name, device):
    fn, bounds = SCALAR[name]
    low, high = bounds or (-2.0, 2.0)
    helper_test_op([(2, 3)], fn, device=device, low=low, high=high)


def test_pow_zero_exponent_has_zero_gradient_at_zero(device):
    x = engine.zeros(3, device=device, requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3, np.float32))


@pytest.mark.parametrize(
    "shapes",
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 4)),
        ((2, 3), (3, 4)),
        ((2, 2, 3), (3, 4)),
        ((2, 1, 2, 3), (3, 3, 2)),
        ((2, 3, 4), (4,)),
        ((0, 3), (3, 2)),
    ],
    ids=str,
)
def test_matmul(shapes, device):
    helper_test_op(shapes, lambda a, b: a @ b, device=device)


def test_matmul_top_level(device):
    helper_test_op([(2, 3), (3, 2)], lambda a, b: lib(a).matmul(a, b), device=device)


def test_matmul_shape_error_names_shapes(device):
    a, b = engine.ones(2, 3, device=device), engine.ones(4, 2, device=device)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4, 2\)"):
        a @ b


# Reductions -----------------------------------------------------------------------------------
REDUCTIONS = {
    "sum": lambda x: x.sum(),
    "sum_dim": lambda x: x.sum(1),
    "sum_neg_dim": lambda x: x.sum(-1),
    "sum_tuple_keepdim": lambda x: x.sum((0, 2), keepdim=True),
    "sum_top_level": lambda x: lib(x).sum(x, 1),
    "mean": lambda x: x.mean(),
    "mean_tuple": lambda x: x.mean((0, 1)),
    "mean_keepdim": lambda x: x.mean(2, keepdim=True),
    "var": lambda x: x.var(),
    "var_dim": lambda x: x.var(1),
    "var_biased_keepdim": lambda x: x.var(2, unbiased=False, keepdim=True),
    "var_tuple": lambda x: x.var((0, 2)),
    "std": lambda x: x.std(),
    "std_dim_keepdim": lambda x: x.std(0, keepdim=True),
    "max": lambda x: x.max(),
    "min": lambda x: x.min(),
    "max_dim": lambda x: x.max(1),
    "min_dim_keepdim": lambda x: x.min(2, keepdim=True),
    "max_neg_dim": lambda x: x.max(-1),
    "amax_tuple": lambda x: x.amax((0, 2)),
    "amin_tuple_keepdim": lambda x: x.amin((1, 2), keepdim=True),
    "prod": lambda x: x.prod(),
    "prod_dim": lambda x: x.prod(1),
    "prod_dim_keepdim": lambda x: x.prod(2, keepdim=True),
    "logsumexp": lambda x: x.logsumexp(1),
    "logsumexp_tuple_keepdim": lambda x: x.logsumexp((0, 2), keepdim=True),
    "norm": lambda x: x.norm(),
    "norm_p1_dim": lambda x: x.norm(1, dim=1),
    "norm_p3_keepdim": lambda x: x.norm(3, dim=(0, 2), keepdim=True),
    "std_correction0": lambda x: x.std(1, correction=0),
    "amax_keepdim": lambda x: x.amax(keepdim=True),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction(name, device):
    helper_test_op([(2, 3, 4)], REDUCTIONS[name], device=device)


@pytest.mark.parametrize("name", ["sum", "sum_dim", "mean_keepdim", "max_dim", "logsumexp"])
def test_reduction_size_one_dims(name, device):
    helper_test_op([(1, 3, 1)], REDUCTIONS[name], device=device)


def test_sum_over_empty_dim(device):
    helper_test_op([(2, 0, 3)], lambda x: x.sum(1), device=device)
    helper_test_op([(0, 3)], lambda x: x.sum(), device=device)


def test_max_with_tuple_dim_reduces_like_amax(device):
    helper_test_op([(2, 3, 4)], lambda x: x.amax((0, 2)), lambda x: x.max((0, 2)), device=device)
    helper_test_op([(2, 3, 4)], lambda x: x.amin((0, 1)), lambda x: x.min((0, 1)), device=device)


def test_prod_tuple_dim(device):
    helper_test_op(
        [(2, 3, 4)], lambda x: x.prod(2).prod(0), lambda x: x.prod((0, 2)), device=device
    )


def test_prod_gradient_with_zeros(device):
    x = np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, -2.0, 0.5]])
    helper_test_op([], lambda x: x.prod(1), inputs=[x], device=device)
    helper_test_op([], lambda x: x.prod(), inputs=[x[:1]], device=device)


def test_max_values_and_indices(device):
    x = engine.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.5]], device=device)
    values, indices = x.max(1)
    assert values.tolist() == [5.0, 7.5] and indices.tolist() == [1, 2]
    assert indices.dtype == np.int64
    r = x.min(dim=0, keepdim=True)
    assert r.values.tolist() == [[1.0, 0.0, 2.0]] and r.indices.tolist() == [[0, 1, 0]]


def test_max_tie_gradient_splits_evenly(device):
    helper_test_op(
        [],
        lambda x: x.max(),
        inputs=[np.array([1.0, 3.0, 3.0, 2.0])],
        device=device,
        gradcheck=False,
    )


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_elementwise_max_min_tie_gradient_splits_evenly(name, device):
    """Ties send half the gradient to each input, as torch.maximum / torch.minimum."""
    a_np, b_np = np.array([1.0, 3.0, 2.0]), np.array([1.0, 2.0, 5.0])
    helper_test_op([], lambda a, b: getattr(lib(a), name)(a, b), inputs=[a_np, b_np],
                   device=device, gradcheck=False)  # fmt: skip
    a = engine.tensor(a_np, device=device, requires_grad=True)
    b = engine.tensor(b_np, device=device, requires_grad=True)
    getattr(engine, name)(a, b).sum().backward()
    a_wins = [0.5, 1.0, 0.0] if name == "maximum" else [0.5, 0.0, 1.0]
    np.testing.assert_array_equal(a.grad.numpy(), a_wins)
    np.testing.assert_array_equal(b.grad.numpy(), 1.0 - np.array(a_wins))


def test_max_of_empty_raises(device):
    with pytest.raises(RuntimeError, match="non-empty"):
        engine.zeros(0, device=device).max()


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.argmax(),
        lambda x: x.argmin(),
        lambda x: x.argmax(1),
        lambda x: x.argmin(-1),
        lambda x: x.argmax(0, keepdim=True),
        lambda x: lib(x).argmax(x, 2),
    ],
)
def test_argmax_argmin(fn, device):
    helper_test_op([(2, 3, 4)], fn, device=device, grad=False)


def test_mean_of_integer_tensor_raises(device):
    with pytest.raises(RuntimeError, match="int64"):
        engine.arange(4, device=device).mean()


def test_sum_of_bools_counts(device):
    x = engine.tensor([[True, False, True], [True, True, True]], device=device)
    s = x.sum(1)
    assert s.dtype == np.int64 and s.tolist() == [2, 3]


# Shape ops ------------------------------------------------------------------------------------
SHAPE_OPS = {
    "reshape": ((2, 3, 4), lambda x: x.reshape(4, -1)),
    "reshape_tuple": ((2, 3, 4), lambda x: x.reshape((3, 8))),
    "view": ((2, 3, 4), lambda x: x.view(6, 4)),
    "flatten": ((2, 3, 4), lambda x: x.flatten()),
    "flatten_start": ((2, 3, 4), lambda x: x.flatten(1)),
    "flatten_top_level": ((2, 3, 4), lambda x: lib(x).flatten(x, 1)),
    "squeeze": ((2, 1, 3, 1), lambda x: x.squeeze()),
    "squeeze_dim": ((2, 1, 3, 1), lambda x: x.squeeze(1)),
    "squeeze_non_one_dim": ((2, 1, 3), lambda x: x.squeeze(0)),
    "unsqueeze": ((2, 3), lambda x: x.unsqueeze(1)),
    "unsqueeze_neg": ((2, 3), lambda x: x.unsqueeze(-1)),
    "transpose": ((2, 3, 4), lambda x: x.transpose(0, 2)),
    "transpose_neg": ((2, 3, 4), lambda x: x.transpose(-1, -2)),
    "T": ((2, 3), lambda x: x.T),
    "permute": ((2, 3, 4), lambda x: x.permute(2, 0, 1)),
    "expand": ((3, 1), lambda x: x.expand(2, 3, 4)),
    "expand_minus_one": ((3, 1), lambda x: x.expand(-1, 5)),
    "repeat": ((2, 3), lambda x: x.repeat(2, 1, 3)),
    "repeat_same_rank": ((2, 3), lambda x: x.repeat(3, 2)),
    "flip": ((2, 3, 4), lambda x: x.flip((0, 2))),
    "reshape_empty": ((0, 3), lambda x: x.reshape(3, 0)),
    "unflatten": ((2, 6), lambda x: x.unflatten(1, (3, 2))),
    "t": ((2, 3), lambda x: x.t()),
    "tile": ((2, 3), lambda x: x.tile((2, 1, 2))),
    "expand_as": ((3, 1), lambda x: x.expand_as(lib(x).ones(2, 3, 4))),
    "view_as": ((2, 3), lambda x: x.view_as(lib(x).ones(3, 2))),
    "concat_alias": ((2, 3), lambda x: lib(x).concat([x, x * 2], 1)),
    "permute_empty": ((2, 0, 3), lambda x: x.permute(1, 2, 0)),
}


@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_shape_ops(name, device):
    shape, fn = SHAPE_OPS[name]
    helper_test_op([shape], fn, device=device)


def test_reshape_error_names_shapes(device):
    with pytest.raises(RuntimeError, match=r"\[4, 4\].*size 6"):
        engine.ones(2, 3, device=device).reshape(4, 4)


def test_expand_error_names_shapes(device):
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4, 3\)"):
        engine.ones(2, 3, device=device).expand(4, 3)


# Indexing -------------------------------------------------------------------------------------
GETITEM = {
    "int": lambda x: x[1],
    "negative_int": lambda x: x[-1, 2],
    "slice": lambda x: x[1:, ::2],
    "empty_slice": lambda x: x[2:2],
    "none": lambda x: x[None, :, None],
    "ellipsis": lambda x: x[..., 1],
    "ellipsis_none": lambda x: x[0, ..., None],
    "int_list": lambda x: x[[0, 2]],
    "repeated_list": lambda x: x[[0, 0, 2, 0]],
    "int_tensor": lambda x: x[index_like(x, [2, 0, 2])],
    "int_tensor_2d": lambda x: x[index_like(x, [[0, 1], [1, 1]])],
    "advanced_pair": lambda x: x[index_like(x, [0, 0, 2]), index_like(x, [1, 1, 3])],
    "slice_then_array": lambda x: x[:, [3, 3, 0]],
    "bool_mask": lambda x: x[x > 0],
    "bool_row_mask": lambda x: x[index_like(x, [True, False, True])],
}


@pytest.mark.parametrize("name", list(GETITEM))
def test_getitem(name, device):
    helper_test_op(
        [(3, 4, 2)] if name != "advanced_pair" else [(3, 4)], GETITEM[name], device=device
    )


def test_repeated_indices_accumulate(device):
    x = engine.zeros(4, device=device, requires_grad=True)
    x[engine.tensor([1, 1, 1, 3], device=device)].sum().backward()
    assert x.grad.tolist() == [0.0, 3.0, 0.0, 1.0]


# Joining and splitting ------------------------------------------------------------------------
def test_cat(device):
    helper_test_op(
        [(2, 3), (2, 1), (2, 0)], lambda a, b, c: lib(a).cat([a, b, c], 1), device=device
    )
    helper_test_op([(1, 3), (2, 3)], lambda a, b: lib(a).cat([a, b]), device=device)


def test_cat_error_names_shapes(device):
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(3, 2\)"):
        engine.cat([engine.ones(2, 3, device=device), engine.ones(3, 2, device=device)], 1)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_stack(dim, device):
    helper_test_op([(2, 3)] * 3, lambda a, b, c: lib(a).stack([a, b, c], dim), device=device)


def test_stack_error_names_shapes(device):
    with pytest.raises(RuntimeError, match=r"\(2,\).*\(3,\)"):
        engine.stack([engine.ones(2, device=device), engine.ones(3, device=device)])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.split(2, 1),
        lambda x: x.split([1, 4], 1),
        lambda x: lib(x).split(x, 1, 0),
        lambda x: x.chunk(3, 1),
        lambda x: lib(x).chunk(x, 2, 0),
        lambda x: x.unbind(1),
    ],
)
def test_split_chunk(fn, device):
    helper_test_op([(2, 5)], fn, device=device)


def test_split_only_some_outputs_used(device):
    helper_test_op([(2, 5)], lambda x: x.split(2, 1)[1] * 3, device=device)


def test_where_with_scalar_branch(device):
    helper_test_op([(2, 3)], lambda x: lib(x).where(x > 0, x, 0.0), device=device)
    helper_test_op([(2, 3)], lambda x: lib(x).where(x > 0, 1.0, x), device=device)


def test_where_with_two_scalars(device):
    cond = engine.tensor([True, False], device=device)
    out = engine.where(cond, 1.0, 0.0)
    assert out.dtype == np.float32 and out.device == device and out.tolist() == [1.0, 0.0]
    assert engine.where(cond, 3, 4).dtype == np.int64


@pytest.mark.parametrize(
    "pad, mode",
    [
        ((1, 2), "constant"),
        ((1, 0, 2, 1), "constant"),
        ((-1, 1), "constant"),
        ((2, 1, 1, 0), "reflect"),
        ((1, 1, 2, 0), "replicate"),
        ((2, 1, 1, 1), "circular"),
    ],
)
def test_pad(pad, mode, device):
    def fn(x):
        F = torch.nn.functional if not isinstance(x, engine.Tensor) else engine.functional
        return F.pad(x, pad, mode=mode)

    helper_test_op([(1, 2, 3, 4)], fn, device=device)


def test_pad_value_and_top_level(device):
    x = engine.ones(2, device=device)
    assert engine.pad(x, (1, 1), value=5.0).tolist() == [5.0, 1.0, 1.0, 5.0]


# Comparisons ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
)
def test_comparisons_give_bool_tensors_without_grad(op, device):
    a = engine.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    b = engine.tensor([3.0, 2.0, 1.0], device=device)
    host = np.array([1.0, 2.0, 3.0])
    for other, host_other in ((b, np.array([3.0, 2.0, 1.0])), (2.0, 2.0)):
        out = op(a, other)
        assert out.dtype == np.bool_ and out.device == device
        assert not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.numpy(), op(host, host_other))


@requires_torch
def test_mixed_dtypes_follow_torch_promotion(device):
    cases = [
        (lambda x: x + 1.5, np.int64),
        (lambda x: x * 2.5, np.int64),
        (lambda x: x / 2, np.int64),
        (lambda x: 3 / x, np.int64),
        (lambda x: x + 1, np.int64),
        (lambda x: x * 2, np.float32),
        (lambda x: x + x.double(), np.float32),
        (lambda x: x**2, np.int64),
    ]
    for fn, dtype in cases:
        data = np.array([1, 2, 3], dtype=dtype)
        ours = fn(engine.tensor(data, device=device))
        theirs = fn(torch.tensor(data))
        assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", "")), (ours, theirs)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_sign_isfinite_isnan_are_constants(device):
    x = engine.tensor([-2.0, 0.0, 3.0, np.inf, np.nan], device=device, requires_grad=True)
    assert x.sign().tolist()[:4] == [-1.0, 0.0, 1.0, 1.0] and not x.sign().requires_grad
    assert x.isfinite().tolist() == [True, True, True, False, False]
    assert x.isnan().tolist() == [False, False, False, False, True]
    assert x.isfinite().dtype == np.bool_


def test_norm_gradient_is_zero_at_zero(device):
    x = engine.zeros(2, 3, device=device, requires_grad=True)
    x.norm(dim=1).sum().backward()
    assert x.grad.tolist() == [[0.0] * 3] * 2
    x.grad = None
    engine.functional.normalize(x, eps=1e-4).sum().backward()  # x / max(||x||, eps): 1 / eps
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1e4), rtol=1e-5)
