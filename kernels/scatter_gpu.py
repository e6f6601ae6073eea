"""Deterministic scatter-add on CuPy arrays: sort by target, one kernel sums each target's run
in order (``kernels/cuda/scatter.cu``). CuPy is imported lazily, only when a launch happens."""

from __future__ import annotations

from typing import Any

from kernels import launch


def add_at(out: Any, index: Any, values: Any) -> None:
    """``out[index] += values`` with repeated positions accumulating, as ``cupy.add.at`` but in
    a fixed order (each position's values in their order in ``values``): the same bits every
    run. ``out`` must be C-contiguous, float32 or float64."""
    cp = launch._cupy()
    # The linear position each value goes to: the index applied to the positions themselves.
    pos = cp.arange(out.size, dtype=cp.int64).reshape(out.shape)[index]
    if not isinstance(values, cp.ndarray):
        values = cp.asarray(values, dtype=out.dtype)
    vals = cp.ascontiguousarray(cp.broadcast_to(values.astype(out.dtype, copy=False), pos.shape))
    vals, pos = vals.ravel(), pos.ravel()
    n = pos.size
    # Unique sort keys (position, then order of appearance), so any sort gives one order.
    key = pos * n + cp.arange(n, dtype=cp.int64) if out.size * max(n, 1) < 2**62 else pos
    order = cp.argsort(key)
    sorted_pos = pos[order]
    targets = cp.arange(out.size, dtype=cp.int64)
    lo = cp.searchsorted(sorted_pos, targets, side="left")
    hi = cp.searchsorted(sorted_pos, targets, side="right")
    launch.launch("scatter.cu", "segment_add", (vals[order], lo, hi, out), out.size)
