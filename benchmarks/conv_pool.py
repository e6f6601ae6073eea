"""Side-by-side timing of conv2d and max_pool2d (forward + backward) against PyTorch.

Cases (issue 3's targets): conv 3x3, 64 -> 64 channels, 32x32, batch 32, padding 1, with bias;
max-pool 2x2 on the same (32, 64, 32, 32) tensor. Both libraries run in this one process,
timed in blocks ours, torch, torch, ours after idle pauses (`benchmarks.run.time_in_blocks`),
so machine noise hits both alike; the table shows medians and the ratio ours / torch (lower is
better, the target is <= 1.5 on CPU and <= 2 on CUDA).

    python benchmarks/conv_pool.py [--device cpu|cuda] [--repeat 20] [--dtype float32]
                                   [--threads N] [--cpu-time]

On CUDA the times come from CUDA events (CuPy's for ours, torch's for PyTorch). `--threads`
caps both BLAS (through threadpoolctl) and PyTorch's intra-op pool; `--cpu-time` measures
process CPU time instead of wall time, steadier on a busy machine (use it with --threads 1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import engine
import engine.functional as F
from benchmarks.run import set_threads, time_in_blocks

SHAPE = (32, 64, 32, 32)


CLOCK = time.perf_counter


def _timer(device: str) -> Callable[[Callable[[], None]], float]:
    """Seconds taken by one call of fn: host clock on cpu, CUDA events on cuda."""
    if device == "cpu":

        def cpu_time(fn):
            start = CLOCK()
            fn()
            return CLOCK() - start

        return cpu_time
    import cupy

    def cuda_time(fn):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop) / 1e3

    return cuda_time


def _torch_timer(device: str):
    import torch

    if device == "cpu":
        return _timer("cpu")

    def cuda_time(fn):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    return cuda_time


def _ours(device: str, dtype: str):
    rng = np.random.default_rng(0)
    x = engine.tensor(rng.standard_normal(SHAPE).astype(dtype), device=device, requires_grad=True)
    w = engine.tensor(
        (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(dtype),
        device=device,
        requires_grad=True,
    )
    b = engine.zeros(64, dtype=dtype, device=device, requires_grad=True)
    gy = engine.tensor(rng.standard_normal(SHAPE).astype(dtype), device=device)
    gp = engine.tensor(rng.standard_normal((32, 64, 16, 16)).astype(dtype), device=device)

    def conv():
        for t in (x, w, b):
            t.grad = None
        F.conv2d(x, w, b, padding=1).backward(gy)

    def pool():
        x.grad = None
        F.max_pool2d(x, 2).backward(gp)

    return {"conv": conv, "maxpool": pool}


def _theirs(device: str, dtype: str):
    import torch

    rng = np.random.default_rng(0)

    def t(a, grad=False):
        return torch.tensor(a.astype(dtype), device=device, requires_grad=grad)

    x = t(rng.standard_normal(SHAPE), True)
    w = t(rng.standard_normal((64, 64, 3, 3)) * 0.05, True)
    b = torch.zeros(64, dtype=getattr(torch, dtype), device=device, requires_grad=True)
    gy = t(rng.standard_normal(SHAPE))
    gp = t(rng.standard_normal((32, 64, 16, 16)))

    def conv():
        for p in (x, w, b):
            p.grad = None
        torch.nn.functional.conv2d(x, w, b, padding=1).backward(gy)

    def pool():
        x.grad = None
        torch.nn.functional.max_pool2d(x, 2).backward(gp)

    return {"conv": conv, "maxpool": pool}


def run(device: str = "cpu", repeat: int = 20, dtype: str = "float32", warmup: int = 3) -> list:
    """[(case, our median s, torch median s or None, ratio or None)] for both cases."""
    ours = _ours(device, dtype)
    try:
        theirs = _theirs(device, dtype)
        torch_timer = _torch_timer(device)
    except ImportError:
        theirs, torch_timer = None, None
    timer = _timer(device)
    rows = []
    for case in ("conv", "maxpool"):
        samplers = [lambda case=case: timer(ours[case])]
        if theirs:
            samplers.append(lambda case=case: torch_timer(theirs[case]))
        for _ in range(warmup):
            for sample in samplers:
                sample()
        mine, *other = time_in_blocks(samplers, repeat, device)
        ref = other[0] if other else []
        m = statistics.median(mine)
        r = statistics.median(ref) if ref else None
        rows.append((case, m, r, m / r if r else None))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    p.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall time")
    args = p.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    if args.threads:
        set_threads(args.threads)
    rows = run(args.device, args.repeat, args.dtype)
    clock = "cpu time" if args.cpu_time else "wall time"
    print(
        f"device={args.device} dtype={args.dtype} shape={SHAPE} repeat={args.repeat} "
        f"threads={args.threads or 'default'} {clock}"
    )
    print(f"{'case (fwd+bwd)':<16}{'ours ms':>10}{'torch ms':>10}{'ratio':>8}")
    for case, m, r, ratio in rows:
        ref = f"{r * 1e3:10.2f}" if r else f"{'-':>10}"
        rat = f"{ratio:8.2f}" if ratio else f"{'-':>8}"
        print(f"{case:<16}{m * 1e3:10.2f}{ref}{rat}")


if __name__ == "__main__":
    main()
