"""No op modifies its inputs: every row of `op_table.OPS`, forward and backward, both devices.

Each op runs on random shapes (size-1 dimensions included) three times per device: float32
inputs, then (on cpu) float32 views into larger buffers whose other elements must survive, then
float64 inputs; each time:

1. forward with no input requiring grad (the inference path);
2. forward recorded, then backward twice (the second accumulates into `.grad`) and once with
   `create_graph=True` (the recorded backward), after which every leaf's `.grad` is scribbled
   on in place (as an optimizer step or clipping does).

After each step the inputs, the op's outputs and the gradients handed to backward must be bit
for bit what they were. `test_every_public_op_has_a_row` keeps the table complete.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from op_table import NOT_OPS, OPS

import engine
import engine.functional as F
from engine import Tensor

DRAWS = 3
_SPACES = {"engine": engine, "F": F, "Tensor": Tensor, "linalg": engine.linalg}


def _resolve(name: str):
    space, attr = name.split(".", 1)
    obj = getattr(_SPACES[space], attr)
    return obj.fget if isinstance(obj, property) else obj


def _cases():
    cases = []
    for i, row in enumerate(OPS):
        seen = set()
        for name in row.names:
            obj = _resolve(name)
            if id(obj) not in seen:  # aliases (F.relu is engine.relu) run once
                seen.add(id(obj))
                cases.append(pytest.param(name, obj, row, id=f"{name}-{i}"))
    return cases


def _public_ops() -> set[str]:
    names = {"engine." + n for n in engine.__all__}
    names |= {
        "F." + n
        for n, v in vars(F).items()
        if not n.startswith("_")
        and callable(v)
        and not isinstance(v, type)
        and v is not getattr(engine, n, None)  # engine's op imported for functional's own use
    }
    names |= {
        "linalg." + n
        for n, v in vars(engine.linalg).items()
        if not n.startswith("_") and callable(v) and not isinstance(v, type)
    }
    for cls in Tensor.__mro__[:-1]:
        for n, v in vars(cls).items():
            dunder = n.startswith("__") and n.endswith("__")
            if (dunder or not n.startswith("_")) and (callable(v) or isinstance(v, property)):
                names.add("Tensor." + n)
    return names


_TENSOR_METADATA = {
    "Tensor." + n
    for n in ("device", "xp", "shape", "ndim", "dtype", "is_leaf", "is_cuda", "data", "__hash__")
}


def test_every_public_op_has_a_row():
    covered = {n for row in OPS for n in row.names}
    missing = sorted(_public_ops() - covered - set(NOT_OPS) - _TENSOR_METADATA)
    assert not missing, (
        f"public ops without a row in tests/engine/op_table.py (add one, or list them in "
        f"NOT_OPS with the reason): {missing}"
    )
    stale = sorted(n for n in covered | set(NOT_OPS) if not _exists(n))
    assert not stale, f"op_table.py names that do not exist (renamed or removed?): {stale}"


def _exists(name: str) -> bool:
    space, attr = name.split(".", 1)
    return hasattr(_SPACES[space], attr)


def _bits(t):
    a = t.numpy() if isinstance(t, Tensor) else t
    return a.dtype, a.shape, a.tobytes()


def _tensors(arrays, device, requires_grad, strided=False, float_dtype=np.float32):
    """Tensors of `arrays` (floats in `float_dtype`) and, with `strided` on cpu, the host buffers
    they are non-contiguous views of (every other element; the rest a sentinel that must
    survive)."""
    out, buffers = [], []
    for a in arrays:
        a = np.asarray(a)
        is_float = a.dtype.kind == "f"
        a = a.astype(float_dtype) if is_float else a
        if strided and device == "cpu":
            buffer = np.zeros(a.shape + (2,), a.dtype)
            buffer[..., 1] = 7 if a.dtype.kind != "b" else True
            view = buffer[..., 0]
            view[...] = a
            t = engine.from_numpy(view)
            buffers.append(buffer)
        else:
            t = engine.tensor(a, device=device)
        out.append(t.requires_grad_() if requires_grad and is_float else t)
    return out, buffers


def _flat(out):
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return []


class _Watch:
    """Bit-exact snapshots of named groups of tensors, compared on demand."""

    def __init__(self, label):
        self.label, self.groups = label, {}

    def add(self, what, tensors):
        self.groups[what] = [(t, _bits(t)) for t in tensors]

    def check(self, when):
        for what, pairs in self.groups.items():
            for i, (t, bits) in enumerate(pairs):
                assert _bits(t) == bits, f"{self.label}: {what} {i} changed {when}"


@pytest.mark.parametrize("name, op, row", _cases())
def test_op_leaves_inputs_unchanged(device, name, op, row):
    for draw in range(DRAWS):
        rng = np.random.default_rng([zlib.crc32(name.encode()), draw])
        arrays = row.inputs(rng)
        label = f"{name} on shapes {[np.shape(a) for a in arrays]}, draw {draw}"

        strided = draw == 1  # on cpu, inputs as non-contiguous views into guarded buffers
        dtype = np.float64 if draw == 2 else np.float32  # float64 paths differ in places
        xs, buffers = _tensors(arrays, device, False, strided, dtype)
        watch = _Watch(label + (" (strided views)" if buffers else ""))
        watch.add("input", xs)
        watch.add("buffer around input", buffers)
        with engine.no_grad():
            row.call(op, *xs)
        watch.check("by the forward under no_grad")
        row.call(op, *xs)
        watch.check("by the forward")
        if not row.grad:
            continue

        xs, buffers = _tensors(arrays, device, True, strided, dtype)
        watch = _Watch(label + (" (strided views)" if buffers else ""))
        watch.add("input", xs)
        watch.add("buffer around input", buffers)
        outs = [o for o in _flat(row.call(op, *xs)) if o.requires_grad]
        watch.check("by the recorded forward")
        if not outs:
            continue
        gys = [
            engine.tensor(rng.standard_normal(o.shape).astype(o.dtype), device=device) for o in outs
        ]
        watch.add("output", outs)
        watch.add("gradient passed to backward", gys)
        engine.autograd.backward(outs, gys, retain_graph=True)
        watch.check("by backward")
        engine.autograd.backward(outs, gys, retain_graph=True)
        watch.check("by a second backward (accumulating into .grad)")
        if row.create_graph:
            engine.autograd.backward(outs, gys, retain_graph=True, create_graph=True)
            watch.check("by backward with create_graph=True")
        for x in xs:
            if x.grad is not None and not np.isscalar(x.grad.array):
                x.grad.array[...] = 7.0  # as an optimizer or clipping writes into .grad
        watch.check("by writing into a leaf's .grad (it shares memory with it)")
