"""Indexing and selection ops (engine/ops/indexing.py, any/all) against PyTorch and float64
central differences, through one table and `helper_test_op` (forward values, dtypes, shapes,
gradients; both devices)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_gradients, helper_test_op, index_like, lib, random_inputs, torch

import engine

IDX = [[0, 2, 1, 0], [2, 2, 0, 1]]  # an index into dim 0 of a (3, 4) input
MASK = [[True, False, True, False], [False, False, True, True], [True, True, False, False]]

# name: (input shapes, fn(*inputs) written once for both libraries, differentiable)
CASES = {
    "gather_dim0": ([(3, 4)], lambda x: x.gather(0, index_like(x, IDX)), True),
    "gather_dim1_small_index": ([(3, 4)], lambda x: x.gather(1, index_like(x, [[3], [0]])), True),
    "gather_top_level_neg_dim": (
        [(2, 3)],
        lambda x: lib(x).gather(x, -1, index_like(x, [[2, 2, 0, 1], [1, 0, 0, 0]])),
        True,
    ),
    "take_along_dim": ([(3, 4)], lambda x: lib(x).take_along_dim(x, index_like(x, IDX), 0), True),
    "take_along_dim_broadcast": (
        [(3, 4)],
        lambda x: lib(x).take_along_dim(x, index_like(x, [[1], [0], [3]]), 1),
        True,
    ),
    "take_along_dim_flat": (
        [(3, 4)],
        lambda x: lib(x).take_along_dim(x, index_like(x, [11, 0, 5, 5])),
        True,
    ),
    "take_along_dim_argsort": (
        [(3, 4)],
        lambda x: lib(x).take_along_dim(x, x.argsort(1), dim=1),
        True,
    ),
    "index_select": ([(3, 4)], lambda x: x.index_select(1, index_like(x, [3, 0, 3])), True),
    "index_select_top_level": (
        [(3, 4, 2)],
        lambda x: lib(x).index_select(x, 0, index_like(x, [2, 2])),
        True,
    ),
    "masked_fill": ([(3, 4)], lambda x: x.masked_fill(index_like(x, MASK), -1.5), True),
    "masked_fill_broadcast_mask": (
        [(2, 3, 4)],
        lambda x: x.masked_fill(index_like(x, [True, False, True, True]), 0.25),
        True,
    ),
    "masked_fill_tensor_value": (
        [(3, 4), ()],
        lambda x, v: lib(x).masked_fill(x, index_like(x, MASK), v),
        True,
    ),
    "masked_select": ([(3, 4)], lambda x: x.masked_select(index_like(x, MASK)), True),
    "masked_select_broadcast": (
        [(2, 1, 4)],
        lambda x: lib(x).masked_select(x, index_like(x, MASK)),
        True,
    ),
    "nonzero": ([(3, 4)], lambda x: (x > 0.3).nonzero(), False),
    "nonzero_as_tuple": ([(2, 3, 2)], lambda x: lib(x).nonzero(x > 0, as_tuple=True), False),
    "sort": ([(3, 5)], lambda x: x.sort(), True),
    "sort_dim0_descending": ([(3, 5)], lambda x: lib(x).sort(x, 0, descending=True), True),
    "sort_stable_ties": (
        [(2, 6)],
        lambda x: (x > 0).float().sort(dim=1, descending=True, stable=True),
        False,
    ),
    "argsort": ([(3, 5)], lambda x: x.argsort(), False),
    "argsort_descending_dim0": ([(3, 5)], lambda x: lib(x).argsort(x, 0, descending=True), False),
    "argsort_stable_ties": (
        [(2, 7)],
        lambda x: (x > 0).float().argsort(stable=True),
        False,
    ),
    "topk": ([(3, 6)], lambda x: x.topk(3), True),
    "topk_smallest_dim0": ([(4, 3)], lambda x: lib(x).topk(x, 2, 0, largest=False), True),
    "topk_all": ([(5,)], lambda x: x.topk(5), True),
    "any": ([(3, 4)], lambda x: (x > 1.5).any(), False),
    "any_dim_keepdim": ([(3, 4)], lambda x: (x > 1).any(1, keepdim=True), False),
    "all_dim": ([(3, 4)], lambda x: (x > -1.5).all(0), False),
    "all_float_top_level": ([(3, 4)], lambda x: lib(x).all(x), False),
    "any_float_dim": ([(3, 4)], lambda x: lib(x).any((x > 0.5) * x, -1), False),
    "tril": ([(4, 3)], lambda x: x.tril(), True),
    "tril_batched_offset": ([(2, 3, 4)], lambda x: lib(x).tril(x, 1), True),
    "triu": ([(3, 4)], lambda x: x.triu(), True),
    "triu_batched_negative_offset": ([(2, 4, 3)], lambda x: lib(x).triu(x, -1), True),
    "diag_of_vector": ([(3,)], lambda x: x.diag(), True),
    "diag_of_vector_offset": ([(3,)], lambda x: lib(x).diag(x, 1), True),
    "diag_of_vector_negative": ([(2,)], lambda x: lib(x).diag(x, -2), True),
    "diag_of_matrix": ([(3, 4)], lambda x: x.diag(), True),
    "diag_of_matrix_offset": ([(3, 4)], lambda x: lib(x).diag(x, -1), True),
    "diagonal": ([(3, 4)], lambda x: x.diagonal(), True),
    "diagonal_dims": ([(2, 3, 4)], lambda x: x.diagonal(1, 0, 2), True),
    "diagonal_negative_dims": ([(2, 3, 4)], lambda x: lib(x).diagonal(x, -1, -1, -2), True),
    "roll": ([(3, 4)], lambda x: x.roll(1), True),
    "roll_dim": ([(3, 4)], lambda x: x.roll(-1, 1), True),
    "roll_dims": ([(3, 4)], lambda x: lib(x).roll(x, (5, -2), (0, 1)), True),
    "repeat_interleave": ([(2, 3)], lambda x: x.repeat_interleave(2), True),
    "repeat_interleave_dim": ([(2, 3)], lambda x: x.repeat_interleave(3, dim=0), True),
    "repeat_interleave_counts": (
        [(2, 3)],
        lambda x: lib(x).repeat_interleave(x, index_like(x, [1, 0, 2]), dim=1),
        True,
    ),
    "repeat_interleave_counts_only": (
        [(3,)],
        lambda x: lib(x).repeat_interleave(index_like(x, [2, 0, 3])),
        False,
    ),
    "unfold": ([(7,)], lambda x: x.unfold(0, 3, 2), True),
    "unfold_dim1": ([(2, 6, 3)], lambda x: x.unfold(1, 2, 1), True),
    "unfold_overlap_dim_last": ([(2, 5)], lambda x: x.unfold(-1, 4, 3), True),
    "meshgrid_ij": (
        [(3,), (2,)],
        lambda a, b: lib(a).meshgrid(a, b, indexing="ij"),
        True,
    ),
    "meshgrid_xy_three": (
        [(3,), (2,), (4,)],
        lambda a, b, c: lib(a).meshgrid([a, b, c], indexing="xy"),
        True,
    ),
    "scatter": (
        [(3, 4), (2, 4)],
        lambda x, s: x.scatter(0, index_like(x, [[0, 1, 2, 0], [2, 0, 1, 1]]), s),
        True,
    ),
    "scatter_value_dim1": (
        [(3, 4)],
        lambda x: x.scatter(1, index_like(x, [[0], [3], [1]]), value=2.5),
        True,
    ),
    # torch's own backward fails for a src larger than index (a shape error in torch 2.13):
    # gradients of this case are checked against central differences only
    "scatter_larger_src": (
        [(3, 4), (3, 5)],
        lambda x, s: lib(x).scatter(x, 1, index_like(x, [[0, 2], [3, 1]]), s),
        "gradcheck",
    ),
    "scatter_add": (
        [(3, 4), (2, 4)],
        lambda x, s: x.scatter_add(0, index_like(x, IDX), s),
        True,
    ),
    "scatter_add_top_level": (
        [(4,), (6,)],
        lambda x, s: lib(x).scatter_add(x, 0, index_like(x, [0, 3, 3, 3, 1, 0]), s),
        True,
    ),
}
for _reduce in ("sum", "prod", "mean", "amax", "amin"):
    for _self in (True, False):
        CASES[f"scatter_reduce_{_reduce}_self_{_self}"] = (
            [(3, 4), (2, 4)],
            lambda x, s, r=_reduce, i=_self: x.scatter_reduce(
                0, index_like(x, IDX), s, r, include_self=i
            ),
            True,
        )


@pytest.mark.parametrize("name", list(CASES))
def test_indexing_op(name, device):
    shapes, fn, differentiable = CASES[name]
    if differentiable == "gradcheck":
        check_gradients(fn, random_inputs(shapes), device)
        differentiable = False
    helper_test_op(shapes, fn, device=device, grad=differentiable)


def test_scatter_reduce_prod_gradient_with_zeros(device):
    x = np.array([[1.5, 0.0, 2.0, -1.0], [0.5, 2.0, 3.0, 1.0], [1.0, -2.0, 0.5, 0.0]])
    src = np.array([[0.0, 2.0, 1.0, 0.0], [3.0, 0.0, 0.0, 2.0]])
    for include_self in (True, False):
        helper_test_op(
            [],
            lambda x, s, i=include_self: x.scatter_reduce(0, index_like(x, IDX), s, "prod",
                                                          include_self=i),
            inputs=[x, src], device=device, gradcheck=False,
        )  # fmt: skip


def test_scatter_reduce_amax_ties_share_the_gradient(device):
    x = engine.tensor([1.0, 5.0], device=device, requires_grad=True)
    src = engine.tensor([5.0, 2.0, 5.0], device=device, requires_grad=True)
    idx = engine.tensor([1, 0, 1], device=device)
    out = x.scatter_reduce(0, idx, src, "amax")
    assert out.tolist() == [2.0, 5.0]
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(src.grad.numpy(), [1 / 3, 1.0, 1 / 3], rtol=1e-6)
    if torch is not None:  # torch splits ties the same way
        tx = torch.tensor([1.0, 5.0], requires_grad=True)
        ts = torch.tensor([5.0, 2.0, 5.0], requires_grad=True)
        tx.scatter_reduce(0, torch.tensor([1, 0, 1]), ts, "amax").sum().backward()
        np.testing.assert_allclose(src.grad.numpy(), ts.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("reduce", ["amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_amax_amin_float16(device, reduce, include_self):
    """float16 amax/amin equal the float32 result (a max/min of float16 values is one of them);
    on cuda CuPy's maximum.at/minimum.at have no float16 (the stand-in raises as CuPy does)."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((3, 4)).astype(np.float16)
    s0 = rng.standard_normal((2, 4)).astype(np.float16)
    s0[0, 1], s0[1, 3] = np.inf, np.nan
    idx = engine.tensor(IDX, device=device)
    outs = {}
    for dtype in ("float32", "float16"):
        x = engine.tensor(x0.astype(dtype), device=device, requires_grad=True)
        src = engine.tensor(s0.astype(dtype), device=device, requires_grad=True)
        out = x.scatter_reduce(0, idx, src, reduce, include_self=include_self)
        out.float().sum().backward()
        outs[dtype] = (out, x.grad, src.grad)
    for a, b in zip(outs["float16"], outs["float32"]):
        assert str(a.dtype) == "float16"
        np.testing.assert_array_equal(a.float().numpy(), b.numpy())


def test_sort_puts_nan_last_like_torch(device):
    x = engine.tensor([2.0, float("nan"), -1.0, 3.0], device=device)
    assert x.argsort().tolist() == [2, 0, 3, 1]
    assert x.argsort(descending=True).tolist() == [1, 3, 0, 2]


def test_inputs_are_not_modified(device):
    x = engine.randn(3, 4, device=device)
    before = x.numpy().copy()
    src = engine.randn(2, 4, device=device)
    idx = engine.tensor(IDX, device=device)
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        x.scatter_reduce(0, idx, src, reduce, include_self=False)
    x.scatter(0, idx, src), x.scatter_add(0, idx, src), x.masked_fill(x > 0, 1.0)
    x.tril(), x.roll(1, 0), x.sort(), x.diag()
    np.testing.assert_array_equal(x.numpy(), before)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x: x.gather(0, engine.tensor([[0]], dtype="int32", device=x.device)),
         RuntimeError, "int64"),
        (lambda x: x.gather(0, engine.tensor([0, 1], device=x.device)), RuntimeError,
         "same number"),
        (lambda x: x.gather(0, engine.tensor([[3, 0]], device=x.device)), IndexError,
         "index 3 is out of bounds"),
        (lambda x: x.index_select(1, engine.tensor([[0]], device=x.device)), IndexError, "1-D"),
        (lambda x: x.masked_fill(x, 0.0), RuntimeError, "bool mask"),
        (lambda x: x.masked_fill(engine.ones(4, 4, dtype="bool", device=x.device), 0.0),
         RuntimeError, r"\(4, 4\).*\(3, 4\)"),
        (lambda x: x.topk(5), RuntimeError, "k=5"),
        (lambda x: x.scatter_reduce(0, engine.tensor([[0]], device=x.device), x, "max"),
         RuntimeError, "amax"),
        (lambda x: x.diagonal(1, 1), RuntimeError, "cannot be equal"),
        (lambda x: x.roll((1, 2), 0), RuntimeError, "same length"),
        (lambda x: x.unfold(0, 4, 1), RuntimeError, "exceeds"),
        (lambda x: x.flatten().tril(), RuntimeError, "at least 2"),
        (lambda x: x.repeat_interleave(engine.tensor([1, 2], device=x.device), dim=1),
         RuntimeError, "same size"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(call, error, match, device):
    if device == "cuda" and "out of bounds" in match:
        pytest.skip("bounds are checked on the CPU only (a sync per call on the GPU)")
    with pytest.raises(error, match=match):
        call(engine.randn(3, 4, device=device))


def test_gather_on_another_device_names_both(device):
    if device == "cpu":
        pytest.skip("needs two devices")
    x = engine.randn(2, 2, device=device)
    with pytest.raises(RuntimeError, match="index is on cpu"):
        x.gather(0, engine.tensor([[0, 1]]))


def test_torch_agrees_on_tie_free_topk_values(device):
    """topk with sorted=True returns values in order, as torch (checked without gradients)."""
    if torch is None:
        pytest.skip("PyTorch (the oracle) is not installed")
    a = np.random.default_rng(3).standard_normal((4, 9)).astype(np.float32)
    ours = engine.tensor(a, device=device).topk(4, dim=1)
    theirs = torch.from_numpy(a).topk(4, dim=1)
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())


@pytest.mark.parametrize(
    "op",
    [
        lambda x, s: x.gather(0, index_like(x, IDX)) * s.sum(),
        lambda x, s: x.scatter(0, index_like(x, IDX), s),
        lambda x, s: x.scatter_add(0, index_like(x, IDX), s),
        lambda x, s: x.scatter_reduce(0, index_like(x, IDX), s, "mean"),
        lambda x, s: x.scatter_reduce(0, index_like(x, IDX), s, "amax", include_self=False),
        lambda x, s: x.topk(2, 0).values * s,
        lambda x, s: x.diag().sum() * s.sum() + x.tril(),
    ],
)
def test_double_backward(op, device):
    """Backwards are engine ops: the gradient of a gradient matches central differences."""

    def grad_of(x, s):
        y = op(x, s)
        (gx,) = engine.grad((y * y).sum(), [x], create_graph=True)
        return gx * s.sum()

    check_gradients(grad_of, random_inputs([(3, 4), (2, 4)], seed=5), device)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("n, k", [(7, 3), (5, 1), (5, 4), (4, 4), (1, 1)])
def test_topk_selects_like_torch_nan_included(n, k, largest, device):
    """topk partitions first, then sorts the k picked: NaN counts as the largest, as in torch."""
    if torch is None:
        pytest.skip("PyTorch (the oracle) is not installed")
    a = np.random.default_rng(n * k).standard_normal((3, n)).astype(np.float32)
    a[0, min(1, n - 1)] = np.nan
    ours = engine.tensor(a, device=device).topk(k, largest=largest)
    theirs = torch.from_numpy(a).topk(k, largest=largest)
    np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
