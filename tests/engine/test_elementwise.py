"""The elementwise ops of issue 15 (rounding, inverse and hyperbolic trigonometry, log2/log10/
exp2/expm1, fmod/copysign/atan2, isinf/isclose, logical and bitwise ops with their operators)
against PyTorch and float64 central differences, through one table and `helper_test_op`."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import helper_test_op, lib

import engine

# name: (fn written once for both libraries, (low, high) of the random inputs)
UNARY = {
    "floor": (lambda x: x.floor(), None),
    "ceil": (lambda x: lib(x).ceil(x), None),
    "round": (lambda x: x.round(), None),
    "round_decimals": (lambda x: lib(x).round(x * 10, decimals=-1), None),
    "trunc": (lambda x: x.trunc(), None),
    "fix": (lambda x: lib(x).fix(x), None),
    "frac": (lambda x: x.frac(), None),
    "log2": (lambda x: x.log2(), (0.1, 3.0)),
    "log10": (lambda x: lib(x).log10(x), (0.1, 3.0)),
    "exp2": (lambda x: x.exp2(), None),
    "expm1": (lambda x: lib(x).expm1(x), (-1e-3, 1e-3)),
    "expm1_wide": (lambda x: x.expm1(), None),
    "asin": (lambda x: x.asin(), (-0.9, 0.9)),
    "acos": (lambda x: lib(x).acos(x), (-0.9, 0.9)),
    "atan": (lambda x: x.atan(), None),
    "arctan_alias": (lambda x: lib(x).arctan(x), None),
    "sinh": (lambda x: x.sinh(), None),
    "cosh": (lambda x: lib(x).cosh(x), None),
    "asinh": (lambda x: x.asinh(), None),
    "acosh": (lambda x: lib(x).acosh(x), (1.1, 3.0)),
    "atanh": (lambda x: x.atanh(), (-0.9, 0.9)),
}


@pytest.mark.parametrize("shape", [(), (2, 3)], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, shape, device):
    fn, bounds = UNARY[name]
    low, high = bounds or (-2.0, 2.0)
    helper_test_op([shape], fn, device=device, low=low, high=high)


INTS = np.array([[1, 2, -3], [0, 7, 4]])


@pytest.mark.filterwarnings("ignore:.*encountered:RuntimeWarning")  # log2(0), asin(7): as torch
@pytest.mark.parametrize(
    "name", ["floor", "trunc", "round", "exp2", "log2", "asin", "sinh", "atan", "expm1"]
)
def test_integer_inputs_follow_torch_dtypes(name, device):
    """Integer tensors: the rounding family keeps them, float math computes in float32."""
    helper_test_op([], lambda x: getattr(lib(x), name)(x), inputs=[INTS], device=device)


BINARY = {
    "atan2": (lambda a, b: a.atan2(b), None),
    "arctan2_top_level": (lambda a, b: lib(a).arctan2(a, b), None),
    "fmod": (lambda a, b: a.fmod(b), (0.5, 3.0)),
    "fmod_negative": (lambda a, b: lib(a).fmod(-a, b), (0.5, 3.0)),
    "copysign": (lambda a, b: a.copysign(b), None),
    "copysign_top_level": (lambda a, b: lib(a).copysign(a, b), None),
}


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), ())], ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary(name, shapes, device):
    fn, bounds = BINARY[name]
    low, high = bounds or (-2.0, 2.0)
    helper_test_op(shapes, fn, device=device, low=low, high=high)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.fmod(1.5),
        lambda x: lib(x).fmod(x, -0.7),
        lambda x: x.copysign(-1.0),
    ],
)
def test_binary_with_python_scalars(fn, device):
    helper_test_op([(2, 3)], fn, device=device)


def test_integer_fmod_and_copysign(device):
    helper_test_op([], lambda a, b: a.fmod(b), inputs=[INTS, np.array([2, -3, 5])],
                   device=device)  # fmt: skip
    helper_test_op([], lambda a, b: a.copysign(b), inputs=[INTS, np.array([1, -3, 5])],
                   device=device)  # fmt: skip


SPECIAL = np.array([1.0, -np.inf, np.nan, np.inf, 0.0, 1.0 + 1e-9])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.isinf(),
        lambda x: lib(x).isnan(x),
        lambda x: x.isfinite(),
        lambda x: lib(x).isposinf(x),
        lambda x: lib(x).isneginf(x),
        lambda x: x.isclose(x * 0 + 1.0),
        lambda x: lib(x).isclose(x, x, equal_nan=True),
        lambda x: lib(x).isclose(x, lib(x).ones_like(x), rtol=0.0, atol=1e-6),
    ],
)
@pytest.mark.filterwarnings("ignore:.*encountered:RuntimeWarning")
def test_special_value_predicates(fn, device):
    helper_test_op([], fn, inputs=[SPECIAL], device=device, grad=False)


def test_allclose(device):
    a = engine.tensor([1.0, 2.0], device=device)
    assert engine.allclose(a, a + 1e-7) and not a.allclose(a + 1e-3)


A_INT = np.array([[5, -3, 0], [12, 7, -1]], dtype=np.int32)
B_INT = np.array([3, 6, 1], dtype=np.int32)
A_BOOL = np.array([True, False, True, False])
B_BOOL = np.array([True, True, False, False])

BITWISE = {
    "and": (lambda a, b: a & b, (A_INT, B_INT)),
    "or": (lambda a, b: a | b, (A_INT, B_INT)),
    "xor": (lambda a, b: a ^ b, (A_INT, B_INT)),
    "not": (lambda a, b: ~a, (A_INT, B_INT)),
    "lshift": (lambda a, b: a << b, (np.abs(A_INT), B_INT)),
    "rshift_signed": (lambda a, b: a >> b, (A_INT, B_INT)),
    "and_fn": (lambda a, b: lib(a).bitwise_and(a, b), (A_INT, B_INT)),
    "or_fn": (lambda a, b: lib(a).bitwise_or(a, b), (A_INT, B_INT)),
    "xor_fn": (lambda a, b: a.bitwise_xor(b), (A_INT, B_INT)),
    "not_fn": (lambda a, b: lib(a).bitwise_not(a), (A_INT, B_INT)),
    "lshift_fn": (lambda a, b: lib(a).bitwise_left_shift(a, b), (np.abs(A_INT), B_INT)),
    "rshift_fn": (lambda a, b: a.bitwise_right_shift(b), (A_INT, B_INT)),
    "int_and_python_int": (lambda a, b: a & 6, (A_INT, B_INT)),
    "reflected_and": (lambda a, b: 1 & a, (A_INT, B_INT)),
    "reflected_or": (lambda a, b: 2 | a, (A_INT, B_INT)),
    "reflected_xor": (lambda a, b: 3 ^ b, (A_INT, B_INT)),
    "reflected_lshift": (lambda a, b: 1 << b, (A_INT, B_INT)),
    "reflected_rshift": (lambda a, b: 64 >> b, (A_INT, B_INT)),
    "int32_or_wraps": (lambda a, b: a | 0xFFFFFFFF, (A_INT, B_INT)),
    "mixed_int_widths": (lambda a, b: a & b.long(), (A_INT, B_INT)),
    "bool_and": (lambda a, b: a & b, (A_BOOL, B_BOOL)),
    "bool_or": (lambda a, b: a | b, (A_BOOL, B_BOOL)),
    "bool_xor": (lambda a, b: a ^ b, (A_BOOL, B_BOOL)),
    "bool_not": (lambda a, b: ~a, (A_BOOL, B_BOOL)),
    "bool_and_python_bool": (lambda a, b: a & True, (A_BOOL, B_BOOL)),
    "logical_and": (lambda a, b: lib(a).logical_and(a, b), (A_INT, B_INT)),
    "logical_or": (lambda a, b: a.logical_or(b), (A_INT, B_INT)),
    "logical_xor": (lambda a, b: lib(a).logical_xor(a, b), (A_INT, B_INT)),
    "logical_not": (lambda a, b: a.logical_not(), (A_INT, B_INT)),
    "logical_and_bool": (lambda a, b: a.logical_and(b), (A_BOOL, B_BOOL)),
}


@pytest.mark.parametrize("name", list(BITWISE))
def test_logical_and_bitwise(name, device):
    fn, inputs = BITWISE[name]
    helper_test_op([], fn, inputs=list(inputs), device=device)


def test_logical_ops_on_floats(device):
    x = np.array([0.0, -1.5, 2.0, 0.0])
    y = np.array([1.0, 0.0, 3.0, 0.0])
    for name in ("logical_and", "logical_or", "logical_xor"):
        helper_test_op([], lambda a, b, n=name: getattr(lib(a), n)(a, b), inputs=[x, y],
                       device=device, grad=False)  # fmt: skip
    helper_test_op([], lambda a: a.logical_not(), inputs=[x], device=device, grad=False)


@pytest.mark.parametrize(
    "call", [lambda x: x & x, lambda x: x | 1, lambda x: ~x, lambda x: x << 1, lambda x: 1 ^ x]
)
def test_bitwise_on_floats_raises(call, device):
    with pytest.raises(TypeError, match="integer and bool tensors.*float32"):
        call(engine.ones(2, device=device))


def test_rounding_gradient_is_zero(device):
    x = engine.tensor([0.3, 1.7, -2.5], device=device, requires_grad=True)
    (x.floor() + x.ceil() + x.round() + x.trunc()).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]
