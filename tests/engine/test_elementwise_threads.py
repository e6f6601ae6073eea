"""The CPU elementwise ops cut over the BLAS thread count (kernels.parallel.each_span: LeakyReLU,
ReLU, training BatchNorm's elementwise passes, ChannelBias): at two BLAS threads the parts
really run on two threads, and every output and gradient is bit for bit the one-thread result,
for odd batch sizes (spans of unequal length), float32 and float64, and non-contiguous
inputs; no input changes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine
import engine.functional as F
from engine.ops.conv import ChannelBias
from engine.ops.norm import batch_norm_train
from kernels import parallel


@pytest.fixture
def small_cut(monkeypatch):
    """Every array cut, however small (the tests' arrays are a few KiB), and the span counts of
    every each_span call recorded."""
    monkeypatch.setattr(parallel, "EACH_SPAN_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "MIN_SPLIT_BYTES", 1)
    counts = []
    spans = parallel.spans

    def spy(n, nbytes):
        out = spans(n, nbytes)
        counts.append(len(out))
        return out

    monkeypatch.setattr(parallel, "spans", spy)
    return counts


def test_each_span_runs_the_spans_on_two_threads(two_blas_threads, small_cut):
    seen, ran = [], []

    def part(s):
        seen.append(s)
        ran.append(threading.get_ident())

    parallel.each_span(part, 7, 1 << 30)
    assert sorted((s.start, s.stop) for s in seen) == [(0, 4), (4, 7)]
    assert len(set(ran)) == 2 and threading.get_ident() in ran


def test_each_span_keeps_small_calls_and_one_thread_whole(two_blas_threads):
    seen = []
    parallel.each_span(seen.append, 64, parallel.EACH_SPAN_MIN_BYTES - 1)
    with parallel.set_enabled(False):
        parallel.each_span(seen.append, 64, 1 << 30)
    assert seen == [slice(0, 64), slice(0, 64)]


def test_each_span_raises_a_part_s_error_after_all_parts(two_blas_threads, small_cut):
    done = []

    def part(s):
        if s.start:
            raise ValueError("boom")
        done.append(s)

    with pytest.raises(ValueError, match="boom"):
        parallel.each_span(part, 5, 1 << 30)
    assert done == [slice(0, 3)]


def _run(op, inputs, gy):
    """op's output and the gradients of its inputs for gy, as arrays."""
    ts = [engine.tensor(a, requires_grad=True) for a in inputs]
    y = op(*ts)
    grads = engine.grad(y, ts, engine.tensor(gy))
    return [y.numpy()] + [g.numpy() for g in grads]


def _bn(x, w, b):
    return batch_norm_train(x, w, b, 1e-5)[0]


OPS = {
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), 1),
    "relu": (engine.relu, 1),
    "batch_norm": (_bn, 3),
    "channel_bias": (lambda y, b: ChannelBias()(y, b), 2),
}


def _inputs(n_in, shape, dtype, layout):
    rng = np.random.default_rng(0)
    if layout == "transposed":  # the leading axis not the outermost in memory
        x = rng.standard_normal(shape[::-1]).astype(dtype).T
    elif layout == "strided":
        x = rng.standard_normal((shape[0], shape[1] * 2) + shape[2:]).astype(dtype)[:, ::2]
    else:
        x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, 0, :2] = 0.0  # exact zeros at the kink
    params = [rng.standard_normal(x.shape[1]).astype(dtype) for _ in range(n_in - 1)]
    return [x] + params


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("name", list(OPS))
def test_two_threads_bit_for_bit_one(two_blas_threads, small_cut, name, layout, dtype):
    op, n_in = OPS[name]
    inputs = _inputs(n_in, (7, 3, 5, 6), dtype, layout)
    before = [a.copy() for a in inputs]
    y_shape = inputs[0].shape
    gy = np.random.default_rng(1).standard_normal(y_shape).astype(dtype)
    with parallel.set_enabled(False):
        one = _run(op, inputs, gy)
    assert small_cut == [1] * len(small_cut)
    assert parallel.threads() == 2
    got = _run(op, inputs, gy)
    assert max(small_cut) == 2, "the elementwise passes were not cut between the threads"
    for g, o in zip(got, one, strict=True):
        assert g.dtype == o.dtype
        np.testing.assert_array_equal(g, o)
    for a, b in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_recorded_leaky_relu_backward_cut_too(two_blas_threads, small_cut):
    """create_graph: the scale is cut, the product a Tensor op (differentiable again)."""
    x0 = np.random.default_rng(2).standard_normal((5, 4, 3)).astype(np.float32)

    def second(enabled):
        with parallel.set_enabled(enabled):
            x = engine.tensor(x0, requires_grad=True)
            (g,) = engine.grad(F.leaky_relu(x, 0.1).pow(2).sum(), [x], create_graph=True)
            return g.numpy(), engine.grad(g.sum(), [x])[0].numpy()

    one, got = second(False), second(True)
    assert max(small_cut) == 2
    for g, o in zip(got, one, strict=True):
        np.testing.assert_array_equal(g, o)
