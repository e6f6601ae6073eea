"""Gradient accumulation on CuPy arrays: ``a_k + b_k`` for a group of tensors in one launch
(``kernels/cuda/grad.cu``), used by autograd for the additions into existing ``.grad``\\ s.

CuPy is imported lazily, only when a launch happens.
"""

from __future__ import annotations

from typing import Any, Sequence

from kernels import launch


def add_multi(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """``[a_k + b_k]``, new contiguous arrays, in one launch. The arrays must be C-contiguous,
    of one float dtype and on one device, ``a_k`` and ``b_k`` of one shape. One host-to-device
    copy carries the three address tables and the offsets (:func:`launch.address_tables`)."""
    cp = launch._cupy()
    first = a[0]
    launch.c_type(first.dtype, "gradient accumulation kernels", "grad.cu")
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape or x.dtype != first.dtype or y.dtype != first.dtype:
            raise ValueError(f"add_multi: pair {k} differs in shape or dtype from pair 0")
        if not (x.flags.c_contiguous and y.flags.c_contiguous):
            raise ValueError(f"add_multi: pair {k} is not C-contiguous")
    with first.device:  # the sums on the arrays' device
        outs = [cp.empty(x.shape, dtype=x.dtype) for x in a]
    tables, total = launch.address_tables((a, b, outs))
    launch.launch("grad.cu", "add_multi", tables, total, (len(a),), dtype=first.dtype)
    return outs


def unscale_multi(grads: Sequence[Any], inv_scale: float) -> tuple[Any, Any]:
    """GradScaler's unscale and inf/NaN check in one launch: a new flat array of every
    ``grads[k] * inv_scale`` in turn (raveled, of their one float dtype) and a 0-d int32 device
    flag, nonzero when a product is inf or NaN. The grads must be C-contiguous, of one float
    dtype and on one device. One host-to-device copy carries the address table, the offsets
    and the zeroed flag (:func:`launch.address_tables`); nothing is read back."""
    cp = launch._cupy()
    first = grads[0]
    launch.c_type(first.dtype, "gradient unscale kernels", "grad.cu")
    launch.check_group(grads, "unscale_multi", "gradient")
    (table, offsets, word), total = launch.address_tables((grads,), zeros=1)
    found = word.view(cp.int32)  # the low half of the zeroed word (little-endian), then 0
    with first.device:
        flat = cp.empty(total, dtype=first.dtype)
    launch.launch(
        "grad.cu", "unscale_multi", (table, offsets, flat, found), total, (len(grads),),
        (inv_scale,), dtype=first.dtype,
    )  # fmt: skip
    return flat, found[0]
