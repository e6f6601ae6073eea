"""The Winograd convs' chunks and the NCHW im2col convs' backward batch on the BLAS thread count
(kernels/parallel.py): the same numbers as one thread (Winograd forward bit for bit, its summed
weight gradients within the Winograd bounds of tests/kernels/test_winograd*.py against float64
im2col; im2col all three passes bit for bit), the parts really cut, BLAS restored, and
OpenBLAS's idle spin set by importing tensortape before NumPy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels import cpu, geometry, parallel, winograd

TOL = {np.float32: 1e-5, np.float64: 1e-12}  # relative to S = the same sums over |values|
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def parts_cut(monkeypatch):
    """The part counts of every parallel.run call."""
    counts = []
    run = parallel.run

    def spy(parts):
        counts.append(len(parts))
        return run(parts)

    monkeypatch.setattr(parallel, "run", spy)
    return counts


def _passes(x, w, gy, g):
    """forward, weight gradient, input gradient through the CPU kernels."""
    y, kept = cpu.conv2d_forward(x, w, None, g, keep_cols=True)
    return y, cpu.conv2d_backward_weight(gy, x, g, kept), cpu.conv2d_backward_input(gy, w, g)


def _reference(x, w, gy, g):
    """float64 im2col + GEMM of the same passes, and their S (the sums over |values|)."""
    with winograd.set_enabled(False):
        want = _passes(*(a.astype(np.float64) for a in (x, w, gy)), g)
        scale = _passes(*(np.abs(a).astype(np.float64) for a in (x, w, gy)), g)
    return want, [s.max() for s in scale]


# 3x3 stride 1 (one chunk a group: groups shared out) and 4x4 stride 2 (one group of the
# whole batch, in phases: tiles by images, products by positions, outputs by images; its
# forward's kept tiles feed the weight gradient).
CASES = [((8, 16, 9, 9), (12, 16, 3, 3), 1, 1), ((8, 16, 10, 10), (12, 16, 4, 4), 2, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, s, p", CASES, ids=["3x3", "4x4s2"])
def test_two_threads_match_one_and_float64(monkeypatch, two_blas_threads, parts_cut, xs, ws, s,
                                           p, dtype):  # fmt: skip
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    g = geometry.conv2d(xs, ws, s, p)
    gy = rng.standard_normal(g.y_shape).astype(dtype)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one image a chunk: 8 chunks
    with winograd.set_enabled("all"):
        assert parallel.threads() == 2
        got = _passes(x, w, gy, g)
        assert max(parts_cut) == 2, "the chunks were not cut between the threads"
        with parallel.set_enabled(False):
            assert parallel.threads() == 1
            one = _passes(x, w, gy, g)
    np.testing.assert_array_equal(got[0], one[0])  # each image's chunk computed alike
    np.testing.assert_array_equal(got[2], one[2])
    if s == 2:  # one product group, run in phases: each position's dU as on one thread
        np.testing.assert_array_equal(got[1], one[1])
    want, scale = _reference(x, w, gy, g)
    for what, a, b, sc in zip(("forward", "weight grad", "input grad"), got, want, scale):
        assert a.dtype == dtype and a.shape == b.shape
        err = np.abs(a.astype(np.float64) - b).max()
        assert err <= TOL[dtype] * sc, f"{what}: {err:.3g} > {TOL[dtype] * sc:.3g}"


# The NCHW im2col paths (few input channels), whose weight gradient (from the kept columns)
# and col2im input gradient are cut by images: DCGAN's D1 and its transposed twin G2 (4x4
# stride 2, 1 channel; the bias a row of the forward's GEMM, and none), the CNN's first conv
# (stride 1: its input gradient is a forward of gy, not cut), and groups (the weight gradient
# keeps its one-thread path, the input gradient is cut). 5 images: parts of 3 and 2.
IM2COL_CASES = [
    ((5, 1, 12, 12), (6, 1, 4, 4), 2, 1, 1, True),
    ((5, 1, 12, 12), (6, 1, 4, 4), 2, 1, 1, False),
    ((5, 1, 9, 9), (4, 1, 3, 3), 1, 1, 1, True),
    ((5, 4, 9, 9), (6, 2, 3, 3), 2, 1, 2, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, s, p, groups, bias", IM2COL_CASES,
                         ids=["d1-bias", "d1", "cnn1", "groups"])  # fmt: skip
def test_im2col_parts_match_one_thread_bit_for_bit(monkeypatch, two_blas_threads, parts_cut, xs,
                                                   ws, s, p, groups, bias, dtype):  # fmt: skip
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    g = geometry.conv2d(xs, ws, s, p, 1, groups)
    gy = rng.standard_normal(g.y_shape).astype(dtype)
    x0, w0, gy0 = x.copy(), w.copy(), gy.copy()
    monkeypatch.setattr(parallel, "MIN_SPLIT_BYTES", 0)

    def passes():
        y, cols = cpu.conv2d_forward(x, w, b, g, keep_cols=True)
        return y, cpu.conv2d_backward_weight(gy, x, g, cols), cpu.conv2d_backward_input(gy, w, g)

    got = passes()
    assert parts_cut and min(parts_cut) == 2, "the batch was not cut between the threads"
    with parallel.set_enabled(False):
        one = passes()
    for what, a, c in zip(("forward", "weight grad", "input grad"), got, one):
        assert a.dtype == dtype and a.shape == c.shape, what
        np.testing.assert_array_equal(a, c, err_msg=what)
    for a, a0 in ((x, x0), (w, w0), (gy, gy0)):  # no pass wrote into its inputs
        np.testing.assert_array_equal(a, a0)
    # The cut passes against the direct definition in float64, within the tolerance relative
    # to the same sums over absolute values.
    f64 = [a.astype(np.float64) for a in (x, w, gy)]
    want = _direct_grads(*f64, s, p, groups)
    scale = _direct_grads(*(np.abs(a) for a in f64), s, p, groups)
    for what, a, c, sc in zip(("weight grad", "input grad"), got[1:], want, scale):
        err = np.abs(a.astype(np.float64) - c).max()
        assert err <= TOL[dtype] * sc.max(), f"{what}: {err:.3g}"


def _direct_grads(x, w, gy, s, p, groups):
    """(dL/dw, dL/dx) of y[n, o] = sum over o's group channels and the taps, tap by tap."""
    N, C, H, W = x.shape
    Co, Cg, kh, kw = w.shape
    OH, OW = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    gw, gxp = np.zeros(w.shape), np.zeros(xp.shape)
    for o in range(Co):
        c0 = o // (Co // groups) * Cg
        for i in range(kh):
            for j in range(kw):
                taps = (slice(None), slice(c0, c0 + Cg), slice(i, i + s * OH, s),
                        slice(j, j + s * OW, s))  # fmt: skip
                gw[o, :, i, j] = np.einsum("nchw,nhw->c", xp[taps], gy[:, o])
                gxp[taps] += gy[:, o, None] * w[o, :, i, j, None, None]
    return gw, gxp[:, :, p : p + H, p : p + W]


def test_small_im2col_convs_stay_on_one_thread(two_blas_threads, parts_cut):
    # Below parallel.MIN_SPLIT_BYTES of columns a hand-off would cost more than half the call.
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((3, 1, 4, 4))
    g = geometry.conv2d(x.shape, w.shape, 2, 1)
    y, cols = cpu.conv2d_forward(x, w, np.ones(3), g, keep_cols=True)
    cpu.conv2d_backward_weight(y, x, g, cols)
    cpu.conv2d_backward_input(y, w, g)
    assert parts_cut == []


def test_few_chunks_stay_on_one_thread(two_blas_threads, parts_cut):
    # 3 one-image chunks: fewer than two a thread, not worth a hand-off.
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 16, 32, 32)), rng.standard_normal((16, 16, 3, 3))
    g = geometry.conv2d(x.shape, w.shape, 1, 1)
    with winograd.set_enabled("all"):
        assert winograd._plan3(g, x.dtype).nb == 1
        cpu.conv2d_forward(x, w, None, g)
    assert parts_cut and max(parts_cut) == 1


def test_run_restores_blas_threads_and_raises_a_parts_error(two_blas_threads):
    def boom():
        raise ValueError("part 1 failed")

    with pytest.raises(ValueError, match="part 1 failed"):
        parallel.run([lambda: parallel.threads(), boom])
    assert parallel.threads() == 2
    assert parallel.run([lambda: parallel.threads(), lambda: 7]) == [1, 7]  # BLAS pinned inside
    assert parallel.threads() == 2


def test_split_is_even_and_in_order():
    assert parallel.split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert parallel.split([1, 2], 2) == [[1], [2]]


def _spin_after_import(first: str, env: dict) -> str:
    code = f"import {first}, engine, numpy, os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=True)  # fmt: skip
    return done.stdout.strip()


def test_openblas_spin_set_only_before_numpy_and_not_over_the_users(monkeypatch):
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    assert _spin_after_import("sys", {}) == "4"  # engine first: set
    assert _spin_after_import("numpy", {}) == "None"  # NumPy first: too late, left alone
    assert _spin_after_import("sys", {"OPENBLAS_THREAD_TIMEOUT": "20"}) == "20"


@pytest.mark.parametrize("shape", [(2, 20, 32, 32), (2, 20, 14, 14), (1, 8, 32, 32)])
def test_channels_last_copy_blocked_where_planes_alias(shape):
    # 32 x 32 float32 planes are 4 KiB apart: copied 8 channels at a time (the last block
    # short); 14 x 14 ones and 8 channels in one go. The same values either way, also from a
    # cropped view.
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    for src in (x, x[:, :, :-3, 1:]):
        dst = np.full((src.shape[0], src.shape[2], src.shape[3], src.shape[1]), np.nan, np.float32)
        winograd._channels_last(dst, src)
        np.testing.assert_array_equal(dst, src.transpose(0, 2, 3, 1))
