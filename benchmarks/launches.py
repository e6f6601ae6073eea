"""Kernel launches, host syncs, host-to-device copies and peak device bytes per training step.

    python -m benchmarks.launches [mlp cnn ...] [--kinds] [--ops]

Runs each benchmark workload (benchmarks/workloads.py) on cuda through the CuPy stand-in of
the tests (tests/cuda_sim; no GPU needed, and none used: the stand-in is installed in place of
any CuPy) and counts one step after two warm-up steps with `cuda_sim.counters`: what the code
asks a GPU for, as CuPy 14 would dispatch it (see tests/cuda_sim/README.md). `--kinds` adds
which calls the launches come from; `--ops` which ops asked for them (an engine Function's
forward/backward, and the line below it that launched: where to look first when cutting).
The PyTorch column is issue 12's count for the same step (PyTorch 2.x's top-level aten ops
with its default foreach optimizers, its proxy for CUDA launches); the goal there is launches
<= 1.25x PyTorch's and 0 syncs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .workloads import WORKLOADS, ours_lib

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


def count(name: str, warmup: int = 2):
    """The counters of one step of workload `name` on the stand-in's cuda, after `warmup`."""
    counters = _standin()
    import engine

    engine.manual_seed(0)
    workload = next(w for w in WORKLOADS if w.name == name)
    step = workload.build(ours_lib("cuda"))
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
    args = p.parse_args(argv)
    unknown = [n for n in args.workloads if n not in names]
    if unknown:
        p.error(f"unknown workload {unknown[0]!r}; expected one of {', '.join(names)}")
    head = f"{'launches':>9}{'PyTorch':>9}{'ratio':>7}{'syncs':>7}{'H2D':>5}{'peak MiB':>10}"
    print(f"{'step':<9}{head}")
    for name in args.workloads or names:
        c = count(name)
        torch_n = TORCH_LAUNCHES.get(name)
        ratio = f"{c.launches / torch_n:.2f}" if torch_n else "-"
        print(
            f"{name:<9}{c.launches:>9}{torch_n or '-':>9}{ratio:>7}{c.syncs:>7}{c.h2d:>5}"
            f"{c.peak_bytes / 2**20:>10.1f}"
        )
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
