"""dtype promotion follows PyTorch: a table of ops x operand kinds, dtypes and values against torch.

Operands are tensors with dimensions, 0-d tensors and Python numbers of each category; PyTorch
treats the last two as "weak" (they count only when of a higher category) and computes integer
inputs of float ops in the default float32 (issue 15: int tensors gave float64 here).
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
from helpers import requires_torch, torch

import engine

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]

# (label, build(lib, device)): a tensor with dims, a 0-d tensor, or a Python number
OPERANDS = [(f"{d}[2]", d, (2,)) for d in DTYPES] + [(f"{d}[]", d, ()) for d in DTYPES]
OPERANDS += [("int 3", 3, None), ("float 1.5", 1.5, None), ("bool True", True, None)]


def _operand(kind, shape, lib, device):
    if shape is None:
        return kind
    values = np.array([3, 2][: shape[0]] if shape else 2).astype(kind)
    if lib is torch:
        return torch.tensor(values)
    return engine.tensor(values, device=device)


def _lib(*xs):
    return torch if any(isinstance(x, torch.Tensor) for x in xs) else engine


BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "pow": operator.pow,
    "mod": operator.mod,
    "floordiv": operator.floordiv,
    "maximum": lambda a, b: _lib(a, b).maximum(a, b),
    "minimum": lambda a, b: _lib(a, b).minimum(a, b),
    "div floor": lambda a, b: _lib(a, b).div(a, b, rounding_mode="floor"),
    "div trunc": lambda a, b: _lib(a, b).div(a, b, rounding_mode="trunc"),
    "where": lambda a, b: _lib(a, b).where(
        _lib(a, b).tensor([True, False]) if _lib(a, b) is torch else _mask(a, b), a, b
    ),
}


def _mask(a, b):
    ref = a if isinstance(a, engine.Tensor) else b
    return engine.tensor([True, False], device=ref.device)


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _compare(fn, args_ours, args_theirs, what, mismatches):
    try:
        theirs = fn(*args_theirs)
    except Exception:  # PyTorch rejects it (bool - bool, int ** -int): not part of the table
        return
    if not isinstance(theirs, torch.Tensor):
        return
    try:
        ours = fn(*args_ours)
    except Exception as e:
        mismatches.append(f"{what}: raised {type(e).__name__}: {e}")
        return
    if str(ours.dtype) != _dtype_name(theirs.dtype):
        mismatches.append(f"{what}: dtype {ours.dtype}, torch {_dtype_name(theirs.dtype)}")
        return
    expected = theirs.numpy().astype(np.float64)
    got = ours.numpy().astype(np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=2e-3, equal_nan=True):
        mismatches.append(f"{what}: values {got.tolist()}, torch {expected.tolist()}")


@requires_torch
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_promotion_table_matches_torch(op, device):
    fn, mismatches = BINARY[op], []
    for la, ka, sa in OPERANDS:
        for lb, kb, sb in OPERANDS:
            if sa is None and sb is None:
                continue
            ours = [_operand(ka, sa, engine, device), _operand(kb, sb, engine, device)]
            theirs = [_operand(ka, sa, torch, device), _operand(kb, sb, torch, device)]
            with np.errstate(all="ignore"):
                _compare(fn, ours, theirs, f"{op}({la}, {lb})", mismatches)
    assert not mismatches, f"{len(mismatches)} cases differ from torch:\n" + "\n".join(
        mismatches[:40]
    )


UNARY = {
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(),
    "rsqrt": lambda x: x.rsqrt(),
    "sin": lambda x: x.sin(),
    "cos": lambda x: x.cos(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "log1p": lambda x: x.log1p(),
    "erf": lambda x: x.erf(),
    "abs": lambda x: x.abs(),
    "neg": lambda x: -x,
    "relu": lambda x: x.relu(),
    "square": lambda x: x.square(),
    "** 0.5": lambda x: x**0.5,
    "** 2": lambda x: x**2,
    "2.0 ** x": lambda x: 2.0**x,
    "/ 2": lambda x: x / 2,
    "% 1.2": lambda x: x % 1.2,
    "// 2": lambda x: x // 2,
    "clamp(0.5)": lambda x: x.clamp(0.5),
    "clamp(1, 2)": lambda x: x.clamp(1, 2),
    "sum": lambda x: x.sum(),
    "prod": lambda x: x.prod(),
}


@requires_torch
@pytest.mark.parametrize("op", list(UNARY))
def test_unary_promotion_table_matches_torch(op, device):
    fn, mismatches = UNARY[op], []
    for label, kind, shape in OPERANDS:
        if shape is None:
            continue
        ours, theirs = _operand(kind, shape, engine, device), _operand(kind, shape, torch, device)
        with np.errstate(all="ignore"):
            _compare(fn, [ours], [theirs], f"{op}({label})", mismatches)
    assert not mismatches, "\n".join(mismatches)


@requires_torch
def test_result_type_and_promote_types_match_torch():
    for da in DTYPES:
        for db in DTYPES:
            expected = torch.promote_types(getattr(torch, da), getattr(torch, db))
            assert str(engine.promote_types(da, db)) == _dtype_name(expected), (da, db)
    for la, ka, sa in OPERANDS:
        for lb, kb, sb in OPERANDS:
            if sa is None:
                continue
            ours = engine.result_type(
                _operand(ka, sa, engine, "cpu"), _operand(kb, sb, engine, "cpu")
            )
            theirs = torch.result_type(
                _operand(ka, sa, torch, "cpu"), _operand(kb, sb, torch, "cpu")
            )
            assert str(ours) == _dtype_name(theirs), (la, lb)


@requires_torch
def test_issue_examples_compute_in_float32(device):
    i = engine.tensor([1, 2, 3], device=device)
    assert i.exp().dtype == np.float32 and i.cos().dtype == np.float32
    assert (i**0.5).dtype == np.float32 and (i % 1.2).dtype == np.float32
    half = engine.tensor(0.5, device=device)
    assert engine.maximum(i.int(), half).dtype == np.float32
    assert engine.div(i, 2.0, rounding_mode="floor").dtype == np.float32
    assert engine.div(i, 2, rounding_mode="trunc").dtype == np.int64
    assert engine.cat([i.int(), engine.tensor([0.5], device=device)]).dtype == np.float32


def test_mixed_float_operands_get_gradients_in_their_own_dtype(device):
    a = engine.tensor([1.0, 2.0], device=device, requires_grad=True)  # float32
    b = engine.tensor(3.0, dtype="float64", device=device, requires_grad=True)  # weak 0-d
    y = a * b
    assert y.dtype == np.float32
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert a.grad.tolist() == [3.0, 3.0] and b.grad.item() == 3.0


def test_div_rounding_modes_values_and_zero_gradient(device):
    a = engine.tensor([-7.0, 7.0, -6.0], device=device, requires_grad=True)
    assert engine.div(a, 2, rounding_mode="floor").tolist() == [-4.0, 3.0, -3.0]
    out = engine.div(a, 2, rounding_mode="trunc")
    assert out.tolist() == [-3.0, 3.0, -3.0]
    out.sum().backward()
    assert a.grad.tolist() == [0.0, 0.0, 0.0]
    ints = engine.tensor([-7, 7, -6, 5], device=device)
    assert engine.div(ints, -2, rounding_mode="trunc").tolist() == [3, -3, 3, -2]
    assert engine.div(ints, -2, rounding_mode="floor").tolist() == [3, -4, 3, -3]
    with pytest.raises(ZeroDivisionError):  # on cuda at the next read (no sync per division)
        engine.div(ints, 0, rounding_mode="floor").tolist()
    with pytest.raises(ValueError, match="rounding_mode"):
        engine.div(ints, 2, rounding_mode="round")
