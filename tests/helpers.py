"""Shared test helpers: compare engine ops with PyTorch, and gradients with float64 differences.

`helper_test_op(shapes, torch_fn, our_fn, device=...)` (tinygrad's pattern) builds the same random
inputs for both libraries, compares the forward values and the gradients of a random cotangent,
and first checks our gradients against central differences in float64 (`check_gradients`), so
the gradient check runs even where PyTorch is not installed. Whole recipes trained step for step
beside PyTorch (twins, explicit random draws, trajectory gaps) are in tests/lockstep.py.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

import engine

try:
    import torch
except ImportError:  # the oracle is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")


def lib(x):
    """The library `x` belongs to (torch or engine), so one lambda serves both."""
    return engine if isinstance(x, engine.Tensor) else torch


def index_like(x, data, dtype=None):
    """A tensor of `data` in `x`'s library (and on its device): int64 indices, bool masks."""
    if isinstance(x, engine.Tensor):
        return engine.tensor(data, dtype=dtype, device=x.device)
    return torch.tensor(data, dtype=getattr(torch, dtype) if dtype else None)


def random_inputs(shapes: Sequence[tuple], low: float = -2.0, high: float = 2.0, seed: int = 0):
    """float64 host arrays drawn uniformly in [low, high), one per shape."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(low, high, size=s) for s in shapes]


def as_engine(arrays, device, dtype=np.float32, requires_grad: bool = True):
    return [
        engine.tensor(
            a.astype(dtype) if a.dtype.kind == "f" else a,
            device=device,
            requires_grad=requires_grad and a.dtype.kind == "f",
        )
        for a in arrays
    ]


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_gradients(
    fn: Callable, arrays, device="cpu", eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3
) -> None:
    """`engine.gradcheck` of `fn` at float64 copies of `arrays` on `device` (float arrays only)."""
    inputs = as_engine(arrays, device, np.float64)

    def single(*xs):
        outs = [o for o in _outputs(fn(*xs)) if o.dtype.kind == "f"]
        if len(outs) == 1:
            return outs[0]
        return engine.cat([o.reshape(-1) for o in outs])

    assert engine.gradcheck(single, inputs, eps=eps, atol=atol, rtol=rtol)


def assert_close(ours, expected, atol: float = 1e-5, rtol: float = 1e-4, what: str = "values"):
    """Compare an engine Tensor (or array) with a torch tensor / array, shapes included."""
    a = ours.numpy() if isinstance(ours, engine.Tensor) else np.asarray(ours)
    if torch is not None and isinstance(expected, torch.Tensor):
        expected = expected.detach().cpu().numpy()
    b = np.asarray(expected)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != expected {b.shape}"
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=what)


def helper_test_op(
    shapes: Sequence[tuple],
    torch_fn: Callable,
    our_fn: Callable | None = None,
    *,
    device="cpu",
    low: float = -2.0,
    high: float = 2.0,
    inputs: Sequence[np.ndarray] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    grad_atol: float | None = None,
    grad: bool = True,
    gradcheck: bool = True,
    seed: int = 0,
) -> None:
    """Forward values and input gradients of `our_fn` equal those of `torch_fn` (float32).

    `inputs` overrides the random arrays (integer arrays are passed without grad). With
    `gradcheck`, the gradients are also checked in float64 against central differences.
    """
    our_fn = our_fn or torch_fn
    arrays = list(inputs) if inputs is not None else random_inputs(shapes, low, high, seed)
    grad = grad and any(a.dtype.kind == "f" for a in arrays)
    if grad and gradcheck:
        check_gradients(our_fn, arrays, device)
    if torch is None:
        pytest.skip("PyTorch (the oracle) is not installed; gradients checked numerically only")

    ours_in = as_engine(arrays, device, requires_grad=grad)
    theirs_in = [
        torch.tensor(
            a.astype(np.float32) if a.dtype.kind == "f" else a,
            requires_grad=grad and a.dtype.kind == "f",
        )
        for a in arrays
    ]
    ours_out, theirs_out = _outputs(our_fn(*ours_in)), _outputs(torch_fn(*theirs_in))
    assert len(ours_out) == len(theirs_out), f"{len(ours_out)} outputs, torch has {len(theirs_out)}"
    for i, (o, t) in enumerate(zip(ours_out, theirs_out, strict=True)):
        assert o.device == device, f"output {i} on {o.device}, expected {device}"
        assert o.dtype == np.dtype(str(t.dtype).replace("torch.", "")), (
            f"output {i}: dtype {o.dtype}, torch gives {t.dtype}"
        )
        assert_close(o, t, atol, rtol, f"forward output {i}")
    if not grad:
        return

    rng = np.random.default_rng(seed + 1)
    pairs = [(o, t) for o, t in zip(ours_out, theirs_out, strict=True) if t.dtype.is_floating_point]
    cotangents = [rng.standard_normal(t.shape).astype(np.float32) for _, t in pairs]
    torch.autograd.backward([t for _, t in pairs], [torch.from_numpy(v) for v in cotangents])
    engine.autograd.backward(
        [o for o, _ in pairs], [engine.tensor(v, device=device) for v in cotangents]
    )
    for i, (x, tx) in enumerate(zip(ours_in, theirs_in, strict=True)):
        if not tx.requires_grad:
            continue
        if tx.grad is None:
            assert x.grad is None or not np.any(x.grad.numpy()), f"input {i}: torch has no grad"
            continue
        assert x.grad is not None, f"input {i}: no gradient, torch has one"
        assert x.grad.device == device
        assert_close(x.grad, tx.grad, grad_atol or atol * 10, rtol * 10, f"gradient of input {i}")


# --------------------------------------------------------------------------------------------
# Crafted IDX (MNIST-format) files: the tests never download MNIST

_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`: magic, big-endian sizes, big-endian data."""
    dt = array.dtype
    code = _IDX_CODES[dt.kind + str(dt.itemsize)]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dt.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray | bytes) -> None:
    raw = array if isinstance(array, bytes) else idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def make_mnist_dir(root, n_train=6, n_test=3, gz=("train-images-idx3-ubyte",)):
    """Small MNIST-shaped IDX files in `root`; names listed in `gz` are gzipped."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(root / (name + ".gz" if name in gz else name), array)
    return arrays


# --------------------------------------------------------------------------------------------
# Distributed tests

MPIEXEC = Path(sys.executable).parent / "mpiexec"  # MPICH's, from the `mpi` extra
try:
    import mpi4py  # noqa: F401

    _has_mpi = MPIEXEC.exists()
except ImportError:
    _has_mpi = False
requires_mpi = pytest.mark.skipif(
    not _has_mpi, reason="mpi4py/MPICH (the `mpi` extra) are not installed"
)
_WORKER = Path(__file__).with_name("mpi_worker.py")


def run_ranks(case: str, *args, tmp_path, nproc: int = 2, timeout: float = 60, env=None):
    """Run `tests/mpi_worker.py CASE` on `nproc` ranks under `mpiexec -m mpi4py`, as a subprocess
    with a timeout (never pytest under mpiexec) and one BLAS thread per rank.

    Returns (completed process, [rank 0's result, rank 1's, ...] or None for a rank that wrote
    none, seconds). A job still running at `timeout` is killed and fails the test.
    """
    root = Path(__file__).resolve().parents[1]
    full_env = dict(os.environ)
    full_env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    full_env.update(env or {})
    cmd = [str(MPIEXEC), "-n", str(nproc), sys.executable, "-m", "mpi4py", str(_WORKER), case]
    cmd += [str(tmp_path)] + [str(a) for a in args]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{case} on {nproc} ranks still ran after {timeout} s (a hang): {e.stderr}")
    seconds = time.monotonic() - start
    results = []
    for r in range(nproc):
        f = Path(tmp_path) / f"rank{r}.json"
        results.append(json.loads(f.read_text()) if f.exists() else None)
    return proc, results, seconds


def cli_error(argv: list[str], capsys) -> tuple[int, str]:
    """Run `tensortape argv` expecting a user error: (exit status, its one stderr line).

    Fails when the command succeeds, prints more than the error line (a usage line from argparse
    excepted), or shows a traceback.
    """
    from tensortape.cli import main  # noqa: PLC0415

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and ": error: " in lines[-1], err
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), err
    return exc.value.code, lines[-1]


def floats(losses):
    """A training step's losses (detached 0-d tensors, a dict of them, or numbers) as floats:
    the steps keep them on the device and the Trainer reads them at its log points."""
    if isinstance(losses, dict):
        return {k: floats(v) for k, v in losses.items()}
    return float(losses.item()) if isinstance(losses, engine.Tensor) else float(losses)
