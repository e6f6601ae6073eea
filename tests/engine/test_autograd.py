"""The tape: backward semantics, higher-order gradients, grad mode, freeing, memory, anomalies."""

from __future__ import annotations

import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest
from helpers import assert_close, check_gradients, requires_torch, torch

import engine


def leaf(data, device, dtype=np.float32):
    return engine.tensor(np.asarray(data, dtype=dtype), device=device, requires_grad=True)


# backward() -----------------------------------------------------------------------------------
def test_backward_of_non_scalar_without_gradient_errors(device):
    x = leaf([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2,\)"):
        (x * 2).backward()


def test_backward_with_explicit_gradient(device):
    x = leaf([1.0, 2.0, 3.0], device)
    (x * x).backward(engine.tensor([1.0, 0.5, -1.0], device=device))
    assert x.grad.tolist() == [2.0, 2.0, -6.0]


def test_backward_gradient_of_wrong_shape_names_shapes(device):
    x = leaf([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match=r"\(3,\).*\(2,\)"):
        (x * 2).backward(engine.ones(3, device=device))


def test_backward_on_tensor_without_grad_errors(device):
    with pytest.raises(RuntimeError, match="does not require grad"):
        engine.ones(2, device=device).sum().backward()


def test_reused_tensor_gradients_accumulate(device):
    # y = x * x + x + x.exp(): dy/dx = 2x + 1 + e^x (x used four times).
    x = leaf([0.5, -1.0], device)
    (x * x + x + x.exp()).sum().backward()
    expected = 2 * np.array([0.5, -1.0]) + 1 + np.exp([0.5, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_grad_accumulates_across_backward_calls(device):
    x = leaf([1.0, 2.0], device)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]


def test_diamond_graph(device):
    # a feeds two branches that meet again: generation order must finish both first.
    x = leaf([2.0], device)
    a = x * 3
    b, c = a.exp(), a * a
    (b + c).sum().backward()
    expected = 3 * np.exp(6.0) + 2 * 6.0 * 3
    np.testing.assert_allclose(x.grad.numpy(), [expected], rtol=1e-5)


def test_gradients_of_two_leaves_are_independent_arrays(device):
    # Add hands the same gradient to both inputs; scaling one .grad must not change the other.
    a, b = leaf([1.0, 1.0], device), leaf([2.0, 2.0], device)
    (a + b).sum().backward()
    a.grad.mul_(10.0)
    assert b.grad.tolist() == [1.0, 1.0]


def test_retain_graph_allows_second_backward(device):
    x = leaf([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_second_backward_through_freed_graph_errors(device):
    x = leaf([1.0, 2.0], device)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_shared_subgraph_freed_after_first_backward(device):
    x = leaf([1.0, 2.0], device)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 2).sum().backward()


def test_retain_grad_on_non_leaf(device):
    x = leaf([1.0, 2.0], device)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    assert h.grad.tolist() == [6.0, 12.0]
    assert x.grad.tolist() == [18.0, 36.0]


def test_is_leaf_and_requires_grad_flags(device):
    x = leaf([1.0], device)
    c = engine.ones(1, device=device)
    y = x * c
    assert x.is_leaf and c.is_leaf and not y.is_leaf
    assert y.requires_grad and not (c * 2).requires_grad and (c * 2).grad_fn is None
    assert y.detach().is_leaf and not y.detach().requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        engine.arange(3, device=device).requires_grad_()


def test_custom_function(device):
    class Cube(engine.Function):
        def forward(self, x):
            return x**3

        def backward(self, gy):
            (x,) = self.inputs
            return gy * 3.0 * x * x

    def cube(x):
        return Cube()(x)

    x = leaf([1.0, -2.0], device)
    y = cube(x)
    assert y.grad_fn.name == "Cube"
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 12.0]
    check_gradients(cube, [np.array([0.3, -1.2, 2.0])], device)


def test_gradcheck_catches_a_wrong_backward(device):
    class WrongSquare(engine.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            return gy * self.inputs[0] * 2.1  # should be 2

    x = engine.tensor([0.5, -1.0, 2.0], dtype=engine.float64, device=device, requires_grad=True)
    assert engine.gradcheck(lambda x: x * x, [x])
    with pytest.raises(AssertionError, match=r"gradcheck failed for input 0 \(shape \(3,\)\)"):
        engine.gradcheck(lambda x: WrongSquare()(x), [x])
    assert not engine.gradcheck(lambda x: WrongSquare()(x), [x], raise_exception=False)
    with pytest.raises(TypeError, match="float64.*float32"):
        engine.gradcheck(lambda x: x * x, [x.float().detach().requires_grad_()])


# Higher-order gradients -----------------------------------------------------------------------
def test_second_and_third_derivative_of_cube(device):
    x = leaf([1.5, -2.0], device, np.float64)
    (g1,) = engine.grad((x**3).sum(), x, create_graph=True)
    (g2,) = engine.grad(g1.sum(), x, create_graph=True)
    (g3,) = engine.grad(g2.sum(), x)
    np.testing.assert_allclose(g1.numpy(), 3 * np.array([1.5, -2.0]) ** 2)
    np.testing.assert_allclose(g2.numpy(), 6 * np.array([1.5, -2.0]))
    np.testing.assert_allclose(g3.numpy(), [6.0, 6.0])
    assert x.grad is None  # engine.grad leaves .grad alone


def test_create_graph_backward_then_backward_again(device):
    x = leaf([2.0], device, np.float64)
    y = (x**3).sum()
    y.backward(create_graph=True)
    g = x.grad
    assert g.requires_grad and g.tolist() == [12.0]
    x.grad = None
    g.sum().backward()
    assert x.grad.tolist() == [12.0]  # d/dx 3x^2 = 6x


F = engine.functional
SECOND_ORDER = {
    "sin_mul": lambda x: (x.sin() * x).sum(),
    "tanh": lambda x: x.tanh().sum(),
    "sigmoid": lambda x: x.sigmoid().sum(),
    "exp_div": lambda x: (x.exp() / (1 + x * x)).sum(),
    "sqrt_log": lambda x: (x.sqrt() * x.log()).sum(),
    "pow_tensor": lambda x: (x ** x.flip(0)).sum(),
    "erf_gelu": lambda x: F.gelu(x).sum(),
    "softmax": lambda x: F.softmax(x, 0)[0],
    "log_softmax": lambda x: F.log_softmax(x, 0)[1],
    "logsumexp": lambda x: x.logsumexp(0) * x[0],
    "prod": lambda x: x.prod(),
    "prod_dim": lambda x: (x.reshape(3, 1) * x).prod(0).sum(),
    "abs_max": lambda x: (x.abs() * x).max() + (x * x).amax(0),
    "var_std": lambda x: x.var() * x.std(),
    "matmul": lambda x: ((x.reshape(1, 3) @ x.reshape(3, 1)).sum()) ** 2,
    "linear": lambda x: F.linear(x.reshape(1, 3), x.reshape(1, 3) * x.reshape(3, 1)).sum(),
    "getitem": lambda x: (x[[0, 0, 2]] ** 3).sum(),
    "where": lambda x: engine.where(x > 1.0, x**3, x**2).sum(),
    "bce_logits": lambda x: F.binary_cross_entropy_with_logits(
        x * x, engine.tensor([0.2, 0.5, 0.9], dtype=x.dtype, device=x.device)
    ),
    "cross_entropy": lambda x: F.cross_entropy(
        x.reshape(1, 3) * x.reshape(3, 1), engine.tensor([0, 2, 1], device=x.device)
    ),
    "softplus_elu": lambda x: (F.softplus(x) * F.elu(x - 1.0)).sum(),
    "cat_stack_split": lambda x: (engine.stack([x, x * x]).split(1, 1)[1] ** 2).sum(),
}


@pytest.mark.parametrize("name", list(SECOND_ORDER))
def test_hessian_vector_products_match_finite_differences(name, device):
    """d/dx <grad f(x), v> equals the difference quotient of grad f: every backward is itself
    differentiable (create_graph=True), as gradient penalties need."""
    fn = SECOND_ORDER[name]
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.5, 1.5, 3)
    v = rng.standard_normal(3)

    def grad_dot_v(x):
        (g,) = engine.grad(fn(x), x, create_graph=True)
        return (g * engine.tensor(v, device=device)).sum()

    check_gradients(grad_dot_v, [x0], device)


def test_prod_double_backward_at_zero_raises_clearly(device):
    x = leaf([0.0, 2.0, 3.0], device)
    (g,) = engine.grad(x.prod(), x, retain_graph=True)  # first order is exact with zeros
    assert g.tolist() == [6.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match="prod: double backward.*zeros"):
        engine.grad(x.prod(), x, create_graph=True)


def _critic_penalty(x, w1, w2, grad):
    critic = ((x @ w1).tanh() @ w2).sum()
    (g,) = grad(critic, x)
    return ((g.norm(dim=1) - 1.0) ** 2).mean()


@requires_torch
def test_gradient_penalty_matches_torch(device):
    """WGAN-GP style: penalise the norm of d critic / d input, then backward into the weights."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal((5, 1))]
    ours = [engine.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    lo = _critic_penalty(*ours, lambda o, i: engine.grad(o, i, create_graph=True))
    lt = _critic_penalty(*theirs, lambda o, i: torch.autograd.grad(o, i, create_graph=True))
    lo.backward()
    lt.backward()
    assert_close(lo, lt, atol=1e-10, rtol=1e-9)
    for o, t in zip(ours, theirs, strict=True):
        assert_close(o.grad, t.grad, atol=1e-10, rtol=1e-9)


# engine.grad ----------------------------------------------------------------------------------
def test_grad_functional_form(device):
    a, b = leaf([1.0, 2.0], device), leaf([3.0], device)
    out = (a * b).sum()
    ga, gb = engine.grad(out, (a, b))
    assert ga.tolist() == [3.0, 3.0] and gb.tolist() == [3.0]
    assert a.grad is None and b.grad is None
    with pytest.raises(RuntimeError, match="second time"):
        engine.grad(out, a)


def test_grad_with_grad_outputs_and_retain(device):
    x = leaf([1.0, 2.0], device)
    y = x * x
    (g,) = engine.grad(
        y, x, grad_outputs=engine.tensor([1.0, -1.0], device=device), retain_graph=True
    )
    assert g.tolist() == [2.0, -4.0]
    (g,) = engine.grad(y.sum(), x)
    assert g.tolist() == [2.0, 4.0]


def test_grad_unused_input(device):
    x, unused = leaf([1.0], device), leaf([1.0], device)
    with pytest.raises(RuntimeError, match="allow_unused"):
        engine.grad((x * 2).sum(), [x, unused], retain_graph=True)
    gx, gu = engine.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gx.tolist() == [2.0] and gu is None


def test_grad_with_respect_to_intermediate(device):
    x = leaf([1.0, 2.0], device)
    h = x * 2
    (gh,) = engine.grad((h * h).sum(), h)
    assert gh.tolist() == [4.0, 8.0]


# Grad mode ------------------------------------------------------------------------------------
def test_no_grad_context_keeps_no_graph(device):
    x = leaf([1.0, 2.0], device)
    with engine.no_grad():
        y = (x * 2).exp().sum()
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_and_enable_grad_as_decorators(device):
    @engine.no_grad()
    def infer(x):
        return x * 2, engine.is_grad_enabled()

    @engine.no_grad
    def infer_bare(x):
        return x * 2

    @engine.enable_grad()
    def train(x):
        return x * 2

    x = leaf([1.0], device)
    y, mode = infer(x)
    assert not mode and y.grad_fn is None and infer_bare(x).grad_fn is None
    with engine.no_grad():
        assert train(x).grad_fn is not None
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()


def test_grad_mode_restored_after_exception_and_nesting():
    with pytest.raises(ValueError):
        with engine.no_grad():
            with engine.enable_grad():
                assert engine.is_grad_enabled()
            assert not engine.is_grad_enabled()
            raise ValueError
    assert engine.is_grad_enabled()
    with engine.set_grad_enabled(False):
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()


# In-place ops and the version counter ---------------------------------------------------------
def test_inplace_on_saved_input_raises_at_backward(device):
    w = leaf([1.0, 2.0], device)
    b = engine.tensor([3.0, 4.0], device=device)
    y = (w * b).sum()
    b.mul_(2)
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*Mul.*version 1"):
        y.backward()


def test_inplace_on_saved_output_raises_at_backward(device):
    x = leaf([1.0, 2.0], device)
    y = x.exp()
    with engine.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match=r"in-place operation.*output 0 of Exp"):
        y.sum().backward()


def test_inplace_through_detached_alias_is_caught(device):
    x = leaf([1.0, 2.0], device)
    y = x.sigmoid()
    y.detach().zero_()
    with pytest.raises(RuntimeError, match="Sigmoid"):
        y.sum().backward()


def test_inplace_on_base_is_seen_through_views(device):
    w = leaf([1.0, 1.0], device)
    x = engine.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    h = x.reshape(2, 2).T[0]  # a view of x's memory
    y = (h * w).sum()
    x.mul_(2)  # changes h's values too
    with pytest.raises(RuntimeError, match="in-place operation: input 0 of Mul"):
        y.backward()
    v = x[1:3]
    z = (v * w).sum()
    x[[0]] = 5.0  # outside v, but tracked per tensor (as PyTorch): still flagged
    with pytest.raises(RuntimeError, match="in-place"):
        z.backward()


def test_advanced_indexing_copies_and_keeps_its_own_counter(device):
    w = leaf([1.0, 1.0], device)
    x = engine.tensor([1.0, 2.0, 3.0], device=device)
    h = x[[0, 2]]
    y = (h * w).sum()
    x.mul_(2)
    y.backward()
    assert w.grad.tolist() == [1.0, 3.0]


def test_inplace_on_unneeded_input_is_fine(device):
    # Add's backward does not read its inputs, so changing them afterwards is harmless.
    x = leaf([1.0, 2.0], device)
    c = engine.tensor([5.0, 5.0], device=device)
    y = (x + c).sum()
    c.add_(1.0)
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_inplace_on_leaf_requiring_grad_needs_no_grad(device):
    w = leaf([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w.add_(1.0)
    with engine.no_grad():
        w.sub_(engine.tensor([0.5, 0.5], device=device), alpha=2)
    assert w.tolist() == [0.0, 1.0]


def test_inplace_on_graph_tensor_raises_instead_of_wrong_gradient(device):
    x = leaf([1.0, 2.0], device)
    h = x * 3
    with pytest.raises(RuntimeError, match=r"in-place.*grad_fn=<MulBackward>"):
        h.mul_(2)
    h *= 2  # augmented assignment falls back to the out-of-place op
    h.sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]


def test_augmented_assignment_updates_parameters_in_place_under_no_grad(device):
    w = leaf([1.0, 2.0], device)
    (w * w).sum().backward()
    before = w
    with engine.no_grad():
        w -= 0.5 * w.grad  # the classic manual SGD step
        w *= 2.0
    assert w is before and w.is_leaf and w.requires_grad
    assert w.tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w += 1.0


def test_inplace_ops_bump_version_and_compute(device):
    t = engine.zeros(2, 2, device=device)
    v0 = t._version[0]
    t.fill_(2.0).add_(1.0).mul_(4.0).div_(2.0).sub_(1.0)
    assert t.tolist() == [[5.0, 5.0], [5.0, 5.0]]
    t.clamp_(max=3.0)
    assert t.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    t.copy_(engine.tensor([1.0, 2.0], device=device))  # broadcast copy
    assert t.tolist() == [[1.0, 2.0], [1.0, 2.0]]
    t.zero_()
    assert t.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    t[0, 1] = 7.0
    assert t.tolist() == [[0.0, 7.0], [0.0, 0.0]]
    assert t._version[0] == v0 + 9


def test_random_inplace_init(device):
    engine.manual_seed(0)
    t = engine.empty(2000, device=device).uniform_(-2.0, 3.0)
    a = t.numpy()
    assert a.min() >= -2.0 and a.max() < 3.0 and abs(a.mean() - 0.5) < 0.1
    t.normal_(1.0, 0.5)
    a = t.numpy()
    assert abs(a.mean() - 1.0) < 0.05 and abs(a.std() - 0.5) < 0.05


# Scale: deep chains and memory ----------------------------------------------------------------
def test_deep_chain_of_100k_ops_backpropagates_without_recursion(device):
    x = leaf([1.0], device)
    y = x
    for _ in range(100_000):
        y = -y
    assert y.grad_fn.generation == 100_000 > sys.getrecursionlimit()
    probe = weakref.ref(y.grad_fn)
    y.sum().backward(retain_graph=True)
    assert x.grad.tolist() == [1.0]
    del y  # the retained 100k-deep graph is released without a recursion error
    gc.collect()
    assert probe() is None


def test_graph_freed_after_backward_and_outputs_held_weakly(device):
    x = leaf(np.ones(3), device)
    h = x.exp()
    fn = h.grad_fn
    h_ref = weakref.ref(h)
    y = (h * 2).sum()
    del h
    assert h_ref() is not None  # still needed: the Mul holds its input
    y.backward()
    assert getattr(fn, "_freed", False)
    del y
    gc.collect()
    assert h_ref() is None


def test_no_graph_kept_under_no_grad(device):
    x = leaf(np.ones(3), device)
    with engine.no_grad():
        h = x.exp()
        out = (h * 2).sum()
    assert out.grad_fn is None and h.grad_fn is None
    h_ref = weakref.ref(h)
    del h
    gc.collect()
    assert h_ref() is None


def _live_tensors() -> int:
    gc.collect()
    kinds = (engine.Tensor, engine.Function)  # type(), not isinstance: no __class__ properties
    return sum(issubclass(type(o), kinds) for o in gc.get_objects())


def test_training_loop_memory_is_steady(device):
    """1,000 SGD steps of a 2-layer MLP in raw engine ops grow neither live tensors nor memory."""
    engine.manual_seed(0)
    x = engine.randn(16, 4, device=device)
    target = (x[:, :1] * 2.0 - x[:, 1:2]).detach()
    w1 = (engine.randn(4, 8, device=device) * 0.5).requires_grad_()
    b1 = engine.zeros(8, device=device, requires_grad=True)
    w2 = (engine.randn(8, 1, device=device) * 0.5).requires_grad_()
    b2 = engine.zeros(1, device=device, requires_grad=True)
    params = [w1, b1, w2, b2]

    def step():
        h = (x @ w1 + b1).relu()
        loss = ((h @ w2 + b2 - target) ** 2).mean()
        for p in params:
            p.grad = None
        loss.backward()
        with engine.no_grad():
            for p in params:
                p.sub_(p.grad * 0.05)
        return loss.item()

    first = step()
    for _ in range(10):
        step()
    live_before = _live_tensors()
    for _ in range(800):
        step()
    # tracemalloc slows every allocation down, so it watches the last 200 of the 1,000 steps.
    # NumPy's small caches still grow there by ~15 KB (they saturate); a leak of a single 16x8
    # float32 array per step would add ~125 KB, a leaked graph megabytes.
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            last = step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert _live_tensors() == live_before
    assert grown < 48 * 1024, f"memory grew by {grown} bytes over 200 steps"
    assert last < 0.1 * first  # and it did learn


# detect_anomaly -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaN/Inf is the point
def test_detect_anomaly_names_the_op_in_forward(device):
    x = leaf([-1.0, 1.0], device)
    with engine.detect_anomaly():
        with pytest.raises(RuntimeError, match=r"'Log'.*forward"):
            x.log()
    x.log()  # outside the context nothing is checked


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaN/Inf is the point
def test_detect_anomaly_names_the_op_in_backward(device):
    x = leaf([0.0, 4.0], device)
    with engine.detect_anomaly():
        y = x.sqrt().sum()  # finite forward, infinite gradient at 0
        with pytest.raises(RuntimeError, match=r"'Sqrt'.*backward"):
            y.backward()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaN/Inf is the point
def test_detect_anomaly_as_decorator(device):
    @engine.detect_anomaly()
    def f(x):
        return x / 0.0

    with pytest.raises(RuntimeError, match="Div"):
        f(leaf([1.0], device))
