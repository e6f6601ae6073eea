"""The stand-in counts what real CuPy would cost: launches, blocking host syncs, host-to-device
copies and peak bytes (tests/cuda_sim/counters.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cuda_sim import counters
from cuda_sim import cupy as cp


def test_views_launch_nothing_and_kernels_count_one_each():
    a = cp.arange(12, dtype=np.float32).reshape(3, 4)
    with counters.count() as c:
        a.reshape(4, 3), a.T, a[1:], cp.broadcast_to(a[:1], (5, 4)), cp.empty((9,))
    assert (c.launches, c.syncs, c.h2d) == (0, 0, 0)
    with counters.count() as c:
        b = a + 1  # operator
        cp.exp(b, out=b)  # ufunc into out=
        b.sum()  # reduction to a 0-d device array
        b.fill(0)  # in place
        b += a  # in-place operator
        a.T.reshape(12)  # a copy: the transpose is not contiguous
        a[cp.asarray(np.array([0, 2]))]  # gather (the index came from the host)
    assert (c.launches, c.syncs, c.h2d) == (7, 0, 1)


def test_reads_of_device_memory_and_data_sized_results_are_syncs():
    a = cp.arange(6, dtype=np.float32)
    with counters.count() as c:
        a.get(), cp.asnumpy(a), a[0].item(), float(a[1]), bool(a[2] > 0), f"{a[3]:.1f}"
    assert c.syncs == 6
    with counters.count() as c:
        a[a > 2], cp.nonzero(a), cp.unique(a), cp.where(a > 1), cp.bincount(a.astype(np.int32))
        a[a > 4] = 0
    assert c.syncs == 6
    assert "boolean mask" in c.sync_sites[0] and "test_counters.py" in c.sync_sites[0]
    with counters.count() as c:
        cp.where(a > 1, a, 0), cp.bincount(a.astype(np.int32), minlength=8), (a > 1).any()
    assert c.syncs == 0


def test_matmul_counts_the_kernels_cupy_adds():
    a, b = cp.ones((8, 4), np.float32), cp.ones((4, 5), np.float32)
    with counters.count() as c:
        a @ b  # one GEMM
    assert c.launches == 1
    with counters.count() as c:
        cp.matmul(a[:, ::2], b[::2])  # cuBLAS can't read a strided matrix: one copy each
    assert c.launches == 3
    stack = cp.ones((3, 8, 4), np.float32)
    with counters.count() as c:
        cp.matmul(stack, b)  # batched: pointer arrays + the broadcast copy of b
    assert c.launches == 1 + 6 + 1


def test_peak_bytes_count_what_was_alive_at_once():
    with counters.count() as c:
        x = cp.ones((1024,), np.float32)  # 4 KiB
        y = x * 2  # 8 KiB alive
        del x, y
        z = cp.zeros((512,), np.float32)  # 2 KiB after the others died
        del z
    assert c.peak_bytes == 8192 and c.live_bytes == 0


def test_nested_blocks_both_count_and_nothing_counts_outside():
    a = cp.ones(3, np.float32)
    with counters.count() as outer:
        a + a
        with counters.count() as inner:
            a.item() if a.size == 1 else a[0].item()
    a + a
    assert (outer.launches, outer.syncs, inner.launches, inner.syncs) == (1, 1, 0, 1)


def test_integer_index_arrays_wrap_as_in_cupy():
    a = cp.arange(5, dtype=np.float32)
    idx = cp.asarray(np.array([6, -1]))
    assert a[idx].tolist() == [1.0, 4.0]  # NumPy would raise; CuPy wraps
    t = cp.asarray(np.array([[7], [0]]))
    assert cp.take_along_axis(cp.ones((2, 5), np.float32), t, axis=1).shape == (2, 1)
    with pytest.raises(IndexError):
        a[cp.asarray(np.array([1.5]))]
