"""Products and norms (einsum, bmm, baddbmm, outer, cross, norm/linalg norms) and attention
(scaled_dot_product_attention, rms_norm) against PyTorch and float64 central differences."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import helper_test_op, index_like, lib, torch

import engine
import engine.functional as F

INF = float("inf")


def linalg(x):
    return engine.linalg if isinstance(x, engine.Tensor) else torch.linalg


def Fof(x):
    return F if isinstance(x, engine.Tensor) else torch.nn.functional


EINSUM = {
    "matmul": ("ij,jk->ik", [(2, 3), (3, 4)]),
    "batched": ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    "implicit_output": ("ij,jk", [(2, 3), (3, 4)]),
    "transpose": ("ij->ji", [(2, 3)]),
    "trace": ("ii", [(3, 3)]),
    "diagonal": ("ii->i", [(3, 3)]),
    "sum_all": ("ijk->", [(2, 3, 2)]),
    "outer": ("i,j->ij", [(3,), (2,)]),
    "dot": ("i,i->", [(4,), (4,)]),
    "ellipsis": ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),
    "ellipsis_broadcast": ("...i,...i->...", [(2, 1, 3), (4, 3)]),
    "three_operands": ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
    "summed_inside_one": ("ij,k->ik", [(2, 3), (4,)]),
    "repeated_and_kept": ("iij->ij", [(3, 3, 2)]),
    "bilinear": ("bn,anm,bm->ba", [(2, 3), (2, 3, 4), (2, 4)]),
    "size_one_sides_broadcast": ("ij,ij->i", [(2, 1), (2, 3)]),
}


@pytest.mark.parametrize("name", list(EINSUM))
def test_einsum(name, device):
    eq, shapes = EINSUM[name]
    helper_test_op(shapes, lambda *xs: lib(xs[0]).einsum(eq, *xs), device=device)


def test_einsum_size_mismatch_names_the_subscript(device):
    with pytest.raises(RuntimeError, match="'j' has sizes 3 and 4"):
        engine.einsum("ij,jk", engine.ones(2, 3, device=device), engine.ones(4, 2, device=device))


def test_einsum_takes_a_list_and_double_backward(device):
    helper_test_op([(2, 3), (3,)], lambda a, b: lib(a).einsum("ij,j->i", [a, b]), device=device)
    a = engine.randn(3, 3, device=device, dtype="float64", requires_grad=True)
    b = engine.randn(3, device=device, dtype="float64", requires_grad=True)

    def grad_of(a, b):
        (ga,) = engine.grad((engine.einsum("ij,j->i", a * a, b) ** 2).sum(), [a], create_graph=True)
        return ga

    assert engine.gradcheck(grad_of, [a, b])


PRODUCTS = {
    "bmm": ([(2, 3, 4), (2, 4, 2)], lambda a, b: lib(a).bmm(a, b)),
    "bmm_method": ([(3, 1, 2), (3, 2, 2)], lambda a, b: a.bmm(b)),
    "baddbmm": (
        [(2, 3, 2), (2, 3, 4), (2, 4, 2)],
        lambda c, a, b: lib(a).baddbmm(c, a, b, beta=0.5, alpha=2.0),
    ),
    "baddbmm_broadcast_input": ([(3, 2), (2, 3, 4), (2, 4, 2)], lambda c, a, b: c.baddbmm(a, b)),
    "outer": ([(3,), (4,)], lambda a, b: lib(a).outer(a, b)),
    "outer_method": ([(2,), (1,)], lambda a, b: a.outer(b)),
    "cross_default_dim": ([(2, 3), (2, 3)], lambda a, b: lib(a).cross(a, b)),
    "cross_dim": ([(3, 2), (3, 2)], lambda a, b: a.cross(b, dim=0)),
    "linalg_cross_broadcast": ([(2, 1, 3), (1, 4, 3)], lambda a, b: linalg(a).cross(a, b)),
}


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_products(name, device):
    shapes, fn = PRODUCTS[name]
    helper_test_op(shapes, fn, device=device)


NORMS = {
    "norm_default": lambda x: x.norm(),
    "norm_fro_dim": lambda x: lib(x).norm(x, "fro", dim=1),
    "norm_inf": lambda x: x.norm(INF),
    "norm_neg_inf_dim": lambda x: x.norm(-INF, dim=0, keepdim=True),
    "norm_p3_tuple": lambda x: x.norm(3, dim=(0, 1)),
    "vector_norm": lambda x: linalg(x).vector_norm(x),
    "vector_norm_ord_dim": lambda x: linalg(x).vector_norm(x, 1.5, dim=-1, keepdim=True),
    "vector_norm_inf": lambda x: linalg(x).vector_norm(x, INF, dim=(0, 2)),
    "matrix_norm_fro": lambda x: linalg(x).matrix_norm(x),
    "matrix_norm_1": lambda x: linalg(x).matrix_norm(x, 1),
    "matrix_norm_neg_1_keepdim": lambda x: linalg(x).matrix_norm(x, -1, keepdim=True),
    "matrix_norm_inf_dims": lambda x: linalg(x).matrix_norm(x, INF, dim=(0, 2)),
    "matrix_norm_neg_inf": lambda x: linalg(x).matrix_norm(x, -INF),
    "linalg_norm": lambda x: linalg(x).norm(x),
    "linalg_norm_dim": lambda x: linalg(x).norm(x, dim=1),
    "linalg_norm_ord_dims": lambda x: linalg(x).norm(x, 1, dim=(1, 2)),
    "linalg_norm_matrix_ord": lambda x: linalg(x).norm(x[0], INF),
    "linalg_norm_vector_ord": lambda x: linalg(x).norm(x[0, 0], 3),
}


@pytest.mark.parametrize("name", list(NORMS))
def test_norms(name, device):
    helper_test_op([(2, 3, 4)], NORMS[name], device=device)


def test_zero_norm_counts_non_zeros(device):
    x = np.array([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]])
    helper_test_op([], lambda x: x.norm(0), inputs=[x], device=device, grad=False)
    helper_test_op([], lambda x: linalg(x).vector_norm(x, 0, dim=1), inputs=[x], device=device,
                   grad=False)  # fmt: skip


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: linalg(x).matrix_norm(x, "nuc"),
        lambda x: linalg(x).matrix_norm(x, 2, keepdim=True),
        lambda x: linalg(x).matrix_norm(x, -2, dim=(0, 2)),
        lambda x: linalg(x).norm(x[0], "nuc"),
        lambda x: lib(x).norm(x[1], "nuc"),
        lambda x: x.norm("nuc", dim=(1, 2)),
        lambda x: linalg(x).svdvals(x),
    ],
)
def test_singular_value_norms(fn, device):
    helper_test_op([(2, 3, 4)], fn, device=device, atol=1e-4)


SDPA = {
    "plain": ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {}),
    "heads": ([(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4)], {}),
    "causal": ([(1, 4, 4), (1, 4, 4), (1, 4, 2)], {"is_causal": True}),
    "causal_rectangular": ([(1, 3, 4), (1, 5, 4), (1, 5, 2)], {"is_causal": True}),
    "scale": ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {"scale": 0.3}),
    "gqa": ([(1, 4, 3, 2), (1, 2, 5, 2), (1, 2, 5, 3)], {"enable_gqa": True}),
}
BOOL_MASK = [[True, False, True, True, False], [True, True, True, False, False],
             [False, False, True, True, True]]  # fmt: skip


@pytest.mark.parametrize("name", list(SDPA))
def test_scaled_dot_product_attention(name, device):
    shapes, kw = SDPA[name]
    helper_test_op(
        shapes, lambda q, k, v: Fof(q).scaled_dot_product_attention(q, k, v, **kw), device=device
    )


def test_sdpa_masks(device):
    shapes = [(2, 3, 4), (2, 5, 4), (2, 5, 3)]
    helper_test_op(shapes + [(3, 5)], lambda q, k, v, m: Fof(q).scaled_dot_product_attention(
        q, k, v, attn_mask=m), device=device)  # fmt: skip
    helper_test_op(shapes, lambda q, k, v: Fof(q).scaled_dot_product_attention(
        q, k, v, attn_mask=index_like(q, BOOL_MASK)), device=device)  # fmt: skip


def test_sdpa_dropout_drops_and_rescales(device):
    engine.manual_seed(0)
    q = engine.ones(1, 4, 2, device=device)
    v = engine.arange(8.0, device=device).reshape(1, 4, 2)
    full = F.scaled_dot_product_attention(q, q, v)
    dropped = F.scaled_dot_product_attention(q, q, v, dropout_p=0.5)
    assert not np.allclose(dropped.numpy(), full.numpy())
    with pytest.raises(RuntimeError, match="not both"):
        F.scaled_dot_product_attention(q, q, v, attn_mask=q[0, :, :1] > 0, is_causal=True)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, w: Fof(x).rms_norm(x, (4,)),
        lambda x, w: Fof(x).rms_norm(x, (3, 4), eps=1e-3),
        lambda x, w: Fof(x).rms_norm(x, [4], w),
    ],
)
def test_rms_norm(fn, device):
    helper_test_op([(2, 3, 4), (4,)], fn, device=device)
