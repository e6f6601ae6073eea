"""Training-mode batch norm on CuPy arrays: two kernels forward, two backward
(``kernels/cuda/norm.cu``), the running statistics moved inside the forward.

Each pair first reduces every channel in S slices (one thread per channel and slice), then
runs one thread per element that combines its channel's S partials. CuPy is imported lazily,
only when a launch happens.
"""

from __future__ import annotations

from typing import Any

from kernels import launch

MAX_SLICES = 16  # the per-element threads read 2 S partials: keep S small
SLICE_THREADS = 2048  # aim for about this many threads in the slice reductions


def slices(channels: int, samples: int) -> int:
    """S: slices per channel, about SLICE_THREADS threads in all, at most MAX_SLICES and one
    sample a slice at least."""
    return max(1, min(MAX_SLICES, -(-SLICE_THREADS // max(channels, 1)), samples))


def _dims(x: Any) -> tuple[int, int, int]:
    n, c = x.shape[0], x.shape[1]
    return n, c, x.size // (n * c) if n * c else 1


def batch_norm_forward(
    x: Any,
    weight: Any | None,
    bias: Any | None,
    eps: float,
    running_mean: Any | None = None,
    running_var: Any | None = None,
    momentum: float = 0.0,
) -> tuple[Any, Any, Any, Any]:
    """``(y, mean, biased var, invstd)`` of x (N, C, ...) contiguous, with the batch statistics;
    ``running_mean`` / ``running_var`` (contiguous, x's dtype; both or neither) move toward the
    batch mean and unbiased variance in place, by ``momentum``. ``weight`` and ``bias`` may be
    strided views (copied: the kernel ignores strides)."""
    cp = launch._cupy()
    weight, bias = (None if a is None else cp.ascontiguousarray(a) for a in (weight, bias))
    n, c, hw = _dims(x)
    s = slices(c, n * hw)
    part = cp.empty((2, c, s), dtype=x.dtype)
    ints = (n, c, hw, s)
    launch.launch("norm.cu", "batch_norm_partials", (x, part), c * s, ints)
    y = cp.empty(x.shape, dtype=x.dtype)
    mean, var, invstd = (cp.empty((c,), dtype=x.dtype) for _ in range(3))
    has_running = running_mean is not None
    arrays = (
        x,
        part,
        mean if weight is None else weight,  # not read without its flag
        mean if bias is None else bias,
        y,
        mean,
        var,
        invstd,
        running_mean if has_running else var,  # not written without its flag
        running_var if has_running else var,
    )
    flags = (weight is not None, bias is not None, has_running)
    launch.launch("norm.cu", "batch_norm_forward", arrays, x.size, ints, (eps, momentum), flags)
    return y, mean, var, invstd


def batch_norm_backward(
    gy: Any, x: Any, mean: Any, invstd: Any, weight: Any | None, want_gx: bool = True
) -> tuple[Any | None, Any, Any]:
    """``(gx or None, gweight, gbias)`` of batch norm for the output gradient gy (x's shape);
    gweight = sum(gy xhat) and gbias = sum(gy) per channel."""
    cp = launch._cupy()
    gy = cp.ascontiguousarray(gy)
    weight = None if weight is None else cp.ascontiguousarray(weight)
    n, c, hw = _dims(x)
    s = slices(c, n * hw)
    part = cp.empty((2, c, s), dtype=x.dtype)
    ints = (n, c, hw, s)
    launch.launch(
        "norm.cu", "batch_norm_backward_partials", (gy, x, mean, invstd, part), c * s, ints
    )
    gx = cp.empty(x.shape, dtype=x.dtype) if want_gx else None
    gw, gb = cp.empty((c,), dtype=x.dtype), cp.empty((c,), dtype=x.dtype)
    arrays = (gy, x, mean, invstd, mean if weight is None else weight, part,
              gw if gx is None else gx, gw, gb)  # fmt: skip
    total = x.size if want_gx else c
    launch.launch("norm.cu", "batch_norm_backward", arrays, total, ints,
                  flags=(weight is not None, want_gx))  # fmt: skip
    return gx, gw, gb
