"""Page faults and time of one training step, tensortape alone in this process.

    python -m benchmarks.page_faults [dcgan|cnn|mlp|...] [--steps 20] [--threads 1]
    TENSORTAPE_HOST_CACHE_MB=0 python -m benchmarks.page_faults dcgan   # malloc's defaults

`engine.memory` keeps freed host memory so that a step's activations reuse pages the previous
step touched (NOTES.md item 10); this measures what that saves. It runs ours only: in
`benchmarks.run` torch shares the process and its allocations change how glibc's heap adapts.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from .workloads import WORKLOADS, ours_lib


def measure(name: str, steps: int = 20, warmup: int = 3) -> dict:
    """Median minor page faults, system and total CPU milliseconds per step of workload `name`."""
    workload = next(w for w in WORKLOADS if w.name == name)
    step = workload.build(ours_lib("cpu"))
    for _ in range(warmup):
        step()
    faults, sys_ms, cpu_ms = [], [], []
    for _ in range(steps):
        before, t = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        step()
        cpu_ms.append((time.process_time() - t) * 1e3)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(after.ru_minflt - before.ru_minflt)
        sys_ms.append((after.ru_stime - before.ru_stime) * 1e3)
    return {
        "faults": statistics.median(faults),
        "sys_ms": statistics.median(sys_ms),
        "cpu_ms": statistics.median(cpu_ms),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.page_faults", description=__doc__.splitlines()[0])
    p.add_argument("workload", nargs="?", default="dcgan", choices=[w.name for w in WORKLOADS])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import engine
    from engine import memory

    memory.configure_from_env()
    engine.set_num_threads(args.threads)

    r = measure(args.workload, args.steps)
    cache = memory.applied_cache_mib()
    print(
        f"{args.workload}: host_cache={f'{cache}MiB' if cache else 'off'} threads={args.threads} "
        f"minor faults/step {r['faults']:.0f}, system {r['sys_ms']:.1f} ms, "
        f"CPU {r['cpu_ms']:.1f} ms per step (medians of {args.steps})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
