"""Kernel launches, host syncs, host-to-device copies and peak device bytes per training step.

    python -m benchmarks.launches [mlp cnn ...] [--kinds] [--ops] [--precision 32,16-mixed]

Runs each benchmark workload (benchmarks/workloads.py) on cuda through the CuPy stand-in of
the tests (tests/cuda_sim; no GPU needed, and none used: the stand-in is installed in place of
any CuPy) and counts one step after two warm-up steps with `cuda_sim.counters`: what the code
asks a GPU for, as CuPy 14 would dispatch it (see tests/cuda_sim/README.md). `--kinds` adds
which calls the launches come from; `--ops` which ops asked for them (an engine Function's
forward/backward, and the line below it that launched: where to look first when cutting).
The PyTorch column is issue 12's count for the same step (PyTorch 2.x's top-level aten ops
with its default foreach optimizers, its proxy for CUDA launches); the goal there is launches
<= 1.25x PyTorch's and 0 syncs. `--precision` runs the steps under autocast (issue 14; the
stand-in has no bfloat16, so bf16-mixed is not counted here): its peak MiB is the step's device
memory, activations and gradients (parameters and optimizer state are allocated before the
counted step); issue 14's goal is DCGAN 16-mixed <= 0.6x 32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .workloads import PRECISIONS, WORKLOADS, ours_lib

ROOT = Path(__file__).resolve().parent.parent
# Issue 12's PyTorch counts (top-level aten ops per step, default foreach optimizers).
TORCH_LAUNCHES = {"mlp": 28, "cnn": 32, "dcgan": 103}


def _standin():
    """Put the CuPy stand-in in place of `cupy` and return its counters module."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import cuda_sim
    from cuda_sim import counters

    cuda_sim.install()
    import engine

    engine.cuda.reset()
    return counters


def count(name: str, warmup: int = 2, precision: str = "32"):
    """The counters of one step of workload `name` on the stand-in's cuda, after `warmup`."""
    counters = _standin()
    import engine

    engine.manual_seed(0)
    workload = next(w for w in WORKLOADS if w.name == name)
    step = workload.build(ours_lib("cuda", precision))
    for _ in range(warmup):
        step()
    with counters.count() as c:
        step()
    return c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.launches", description=__doc__.splitlines()[0])
    names = [w.name for w in WORKLOADS]
    p.add_argument("workloads", nargs="*", metavar="workload", help=f"of {', '.join(names)}")
    p.add_argument("--kinds", action="store_true", help="list the launches by kind")
    p.add_argument("--ops", action="store_true", help="list the launches by the op that asked")
    p.add_argument(
        "--precision", default="32", help=f"comma-separated, of {', '.join(PRECISIONS[:2])}"
    )
    args = p.parse_args(argv)
    precisions = [q for q in PRECISIONS if q in args.precision.split(",")]  # 32 first
    if not set(args.precision.split(",")) <= set(PRECISIONS[:2]):
        p.error(f"--precision: expected {' or '.join(PRECISIONS[:2])}, got {args.precision!r}")
    unknown = [n for n in args.workloads if n not in names]
    if unknown:
        p.error(f"unknown workload {unknown[0]!r}; expected one of {', '.join(names)}")
    head = f"{'launches':>9}{'PyTorch':>9}{'ratio':>7}{'syncs':>7}{'H2D':>5}{'peak MiB':>10}"
    extra = precisions != ["32"]  # the precision columns only when asked for
    print(f"{'step':<9}{'precision':>10}{head}{'peak/32':>9}" if extra else f"{'step':<9}{head}")
    for name in args.workloads or names:
        base = None
        for precision in precisions:
            c = count(name, precision=precision)
            base = base or c.peak_bytes
            torch_n = TORCH_LAUNCHES.get(name) if precision == "32" else None
            ratio = f"{c.launches / torch_n:.2f}" if torch_n else "-"
            cells = (
                f"{c.launches:>9}{torch_n or '-':>9}{ratio:>7}{c.syncs:>7}{c.h2d:>5}"
                f"{c.peak_bytes / 2**20:>10.1f}"
            )
            if extra:
                print(f"{name:<9}{precision:>10}{cells}{c.peak_bytes / base:>9.2f}")
            else:
                print(f"{name:<9}{cells}")
            for site in c.sync_sites:
                print(f"    sync: {site}")
            if args.kinds:
                print("    " + ", ".join(f"{k} {n}" for k, n in c.launch_kinds.most_common()))
            if args.ops:
                for op, n in c.launch_sites.most_common():
                    print(f"    {n:>5}  {op}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
