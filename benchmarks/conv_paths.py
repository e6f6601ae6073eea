"""FLOPs and rate of each CPU conv path on the benchmark workloads' convolutions.

    python -m benchmarks.conv_paths [--threads 1] [--repeats 9] [--cpu-time]

For each conv of the conv2d, CNN and DCGAN workloads and each pass (forward, input gradient,
weight gradient; a transposed conv's forward is its matching conv's input gradient): the path
that runs (``winograd``: F(4x4,3x3); ``wino-ph``: F(4x4,2x2) or F(7x7,2x2) on the polyphase
components of a 4x4 stride-2 conv; or im2col + GEMM), the FLOPs it executes (multiply-adds
x 2, transforms included), its median time, its rate, and that rate against this machine's
float32 GEMM rate (1024^3); where Winograd applies, also im2col with it switched off, timed in turn
with it. ``effective`` is the direct conv's FLOPs over the time: above the GEMM rate means
faster than any im2col could be. For a strided conv's input gradient where the opt-in
polyphase path (``TENSORTAPE_POLYPHASE=1``, no Winograd) is eligible, a second row times it in
turn with im2col (same FLOPs: its ratio column is polyphase / im2col).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.run import set_threads
from kernels import cpu, geometry, polyphase, winograd

# name, x shape, w shape, stride, padding
CONVS = [
    ("conv2d", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("cnn.conv1", (64, 1, 28, 28), (32, 1, 3, 3), 1, 1),
    ("cnn.conv2", (64, 32, 14, 14), (64, 32, 3, 3), 1, 1),
    ("dcgan.D1 / G2^T", (64, 1, 28, 28), (64, 1, 4, 4), 2, 1),
    ("dcgan.D2 / G1^T", (64, 64, 14, 14), (128, 64, 4, 4), 2, 1),
]
PASSES = ("forward", "input grad", "weight grad")


def _calls(x, w, gy, g):
    return {
        "forward": lambda: cpu.conv2d_forward(x, w, None, g),
        "input grad": lambda: cpu.conv2d_backward_input(gy, w, g),
        "weight grad": lambda: cpu.conv2d_backward_weight(gy, x, g),
    }


def _winograd_flops(g, which: str) -> tuple[float, str] | None:
    """FLOPs and name of the Winograd path for this pass, None when it takes im2col."""
    f32 = np.dtype(np.float32)
    if winograd.strided_applies(g, f32):  # F(4x4 or 7x7, 2x2) on the phases, all three passes
        f, path = winograd.flops(g, which), "wino-ph"
    else:
        if which == "input grad":
            if g.ph > 2 or g.pw > 2:
                return None
            g = cpu._flipped(np.zeros(g.w_shape, np.float32), g)[1]
        if not winograd.applies(g, f32):
            return None
        f, path = winograd.flops(g), "winograd"
    return f["input transform"] + f["products"] + f["output transform"], path


def _direct_flops(g) -> float:
    return 2.0 * g.N * g.K * g.OH * g.OW * g.C * g.kh * g.kw


def _median_times(fns: list, repeats: int, clock) -> list[float]:
    """Median seconds of each fn, called in turn (A B A B ...) after one warm-up each."""
    for fn in fns:
        fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, samples, strict=True):
            start = clock()
            fn()
            out.append(clock() - start)
    return [statistics.median(s) for s in samples]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.conv_paths", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--cpu-time", action="store_true", help="process CPU time (use with 1 thread)")
    args = p.parse_args(argv)
    clock = time.process_time if args.cpu_time else time.perf_counter
    threads = set_threads(args.threads, torch_too=False)
    a = np.random.default_rng(0).standard_normal((2, 1024, 1024)).astype(np.float32)
    rate = 2.0 * 1024**3 / min(_median_times([lambda: a[0] @ a[1]], 5, clock) * 3)  # same clock
    print(f"threads={threads} clock={'cpu' if args.cpu_time else 'wall'} "
          f"float32 GEMM 1024^3: {rate / 1e9:.1f} GFLOP/s")  # fmt: skip
    print(f"{'conv':<17}{'pass':<12}{'path':<10}{'GFLOP':>7}{'ms':>8}{'GFLOP/s':>9}"
          f"{'of GEMM':>8}{'effective':>10}{'im2col ms':>10}{'ratio':>7}")  # fmt: skip
    rng = np.random.default_rng(1)
    for name, xs, ws, s, pad in CONVS:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        g = geometry.conv2d(xs, ws, s, pad)
        gy = rng.standard_normal(g.y_shape).astype(np.float32)
        direct = _direct_flops(g)
        for which, fn in _calls(x, w, gy, g).items():
            wf = _winograd_flops(g, which)
            if wf is None:
                (t,) = _median_times([fn], args.repeats, clock)
                flops, path, base = direct, "im2col", None
            else:

                def off(fn=fn):
                    with winograd.set_enabled(False):
                        fn()

                t, base = _median_times([fn, off], args.repeats, clock)
                flops, path = wf
            print(
                f"{name:<17}{which:<12}{path:<10}{flops / 1e9:7.2f}{t * 1e3:8.2f}"
                f"{flops / t / 1e9:9.1f}{flops / t / rate:8.0%}{direct / t / 1e9:10.1f}"
                + (f"{base * 1e3:10.2f}{t / base:7.2f}" if base else ""),
                flush=True,
            )
            if which == "input grad" and polyphase.eligible(g):
                _polyphase_row(name, fn, direct, rate, args.repeats, clock)
    return 0


def _polyphase_row(name, fn, flops, rate, repeats, clock) -> None:
    """The opt-in polyphase input gradient, timed in turn with im2col."""

    def on(fn=fn):
        with polyphase.set_enabled(True):
            fn()

    def off(fn=fn):
        with polyphase.set_enabled(False), winograd.set_enabled(False):
            fn()

    t, base = _median_times([on, off], repeats, clock)
    print(
        f"{name:<17}{'input grad':<12}{'polyphase':<10}{flops / 1e9:7.2f}{t * 1e3:8.2f}"
        f"{flops / t / 1e9:9.1f}{flops / t / rate:8.0%}{flops / t / 1e9:10.1f}"
        f"{base * 1e3:10.2f}{t / base:7.2f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
