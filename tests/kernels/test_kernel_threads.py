"""The Winograd convs' chunks on the BLAS thread count (kernels/parallel.py): the same numbers
as one thread (forward bit for bit; summed weight gradients within the Winograd bounds of
tests/kernels/test_winograd*.py against float64 im2col), the parts really cut, BLAS restored,
and OpenBLAS's idle spin set by importing tensortape before NumPy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels import cpu, geometry, parallel, winograd

threadpoolctl = pytest.importorskip("threadpoolctl")

TOL = {np.float32: 1e-5, np.float64: 1e-12}  # relative to S = the same sums over |values|
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_blas_threads():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


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
# whole batch, re-cut into one a thread; its forward's kept tiles feed the weight gradient).
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
    want, scale = _reference(x, w, gy, g)
    for what, a, b, sc in zip(("forward", "weight grad", "input grad"), got, want, scale):
        assert a.dtype == dtype and a.shape == b.shape
        err = np.abs(a.astype(np.float64) - b).max()
        assert err <= TOL[dtype] * sc, f"{what}: {err:.3g} > {TOL[dtype] * sc:.3g}"


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
