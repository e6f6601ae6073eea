"""tensortape vs PyTorch, side by side: `python -m benchmarks.run`.

    python -m benchmarks.run [--device cpu|cuda] [--repeats N] [--builds B] [--only mlp,cnn]
                             [--threads T] [--cpu-time] [--same-process] [--in-process]
                             [--precision 32,16-mixed,bf16-mixed]

By default each library runs each workload (see `benchmarks.workloads`) in a process of its
own, so that neither library's thread pool (OpenBLAS's spinning workers, torch's OpenMP pool)
nor its allocator policy (ours keeps freed host memory, `engine.memory`) touches the other's
timing: per build one process of ours and one of torch, in turn (torch first on odd builds),
each a warm-up and then N timed steps of one fresh model. The ratio is that of the medians over
all builds; the range of the per-build ratios and the ratio of the fastest steps come with it.

`--same-process` runs both libraries in one interpreter per workload (`--in-process`: all in
this one), B fresh builds of the model in each library; per build a warm-up, then N steps of each
timed in blocks ours, torch, torch, ours (torch first on odd builds), so machine noise hits both
alike; each block starts after a pause in which the other library's worker threads go idle.
Reported: medians over all timed steps, the ratio ours / torch (lower is better; the target is
<= 1.0 on CPU), the floor (the step's GEMM FLOPs over this machine's float32 GEMM rate) and the
peak memory of one step. Also the framework overhead (one
elementwise op on 16 floats with the graph recorded) and the GEMM rate itself.

Threads: both libraries get the same count: NumPy's BLAS pool (threadpoolctl) and
`torch.set_num_threads` are both set to `--threads`, by default the BLAS pool's current size.
On cuda, steps are bracketed by device synchronisation and the peak memory is that of the
memory pools (CuPy's pool via a memory hook, `torch.cuda.max_memory_allocated`).

Precision (issue 14): `--precision` lists Lightning's words; each workload runs under each, both
libraries with the same recipe (autocast around the forward, a GradScaler for 16-mixed; see
`benchmarks.workloads`). On the CPU, torch's peer is its own CPU autocast (bfloat16, and
float16 since torch 2.x); ours emulates tensor cores there (float32 kernels on rounded inputs).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

import kernels

from .workloads import PRECISIONS, WORKLOADS, Workload, ours_lib, torch_lib

OVERHEAD_OPS = 2000  # ops per overhead sample
STEP_BUDGET_S = 0.6  # default timed seconds per build and library
MIN_REPEATS, MAX_REPEATS = 5, 40
SETTLE_S = 0.3  # pause before each timed block: > OpenBLAS's idle-thread spin (2**28 cycles)


# Devices, threads, clocks ------------------------------------------------------------------
def _torch(device: str):
    """torch, or None when it is missing or (on cuda) has no CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    return torch


def set_threads(n: int | None, torch_too: bool = True) -> int:
    """Give NumPy's BLAS and torch the same thread count; returns it. `torch_too=False` leaves
    torch unimported (a process that runs ours alone)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if n is None:
        pools = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        n = max(pools) if pools else 1
    threadpool_limits(n, user_api="blas")
    torch = _torch("cpu") if torch_too else None
    if torch is not None:
        torch.set_num_threads(n)
    return n


def _syncs(device: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(ours, torch) functions that wait for the device to finish queued work."""
    if device == "cpu":
        return (lambda: None), (lambda: None)
    from engine.device import cupy

    torch = _torch(device)
    cp = cupy()
    return cp.cuda.Device().synchronize, (torch.cuda.synchronize if torch else (lambda: None))


CLOCK = time.perf_counter  # time.process_time with --cpu-time


def _time(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = CLOCK()
    fn()
    sync()
    return CLOCK() - start


def _settle(device: str) -> None:
    """Let the other library's worker threads go idle before timing on the CPU."""
    if device == "cpu":
        time.sleep(SETTLE_S)


def time_in_blocks(samplers: list[Callable[[], float]], n: int, device: str) -> list[list[float]]:
    """`n` samples of each sampler (one timed call each), taken in blocks A, B, ..., B, A of
    about n/2, each block after an idle pause. Not call by call: a library's idle threads spin
    on the cores for a while after its call (OpenBLAS's ~0.1 s), and alternating call by call
    made torch's next step up to 2x slower at 2 threads (benchmarks/NOTES.md item 11)."""
    out: list[list[float]] = [[] for _ in samplers]
    order = list(range(len(samplers)))
    counts = [n - n // 2] * len(order) + [n // 2] * len(order)
    for count, i in zip(counts, order + order[::-1]):
        _settle(device)
        out[i].extend(samplers[i]() for _ in range(count))
    return out


# Peak memory ---------------------------------------------------------------------------------
def _proc_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"{field}:\s+(\d+) kB", f.read())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS, so RSS growth counts this step's allocations."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_mib(step: Callable[[], None]) -> float | None:
    """Peak RSS during one step above the RSS before it (Linux: VmHWM reset via clear_refs)."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _proc_kib("VmRSS")
    step()
    peak = _proc_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024


def peak_cuda_mib(step: Callable[[], None], lib: str) -> float | None:
    """Peak bytes held by the memory pool during one step, above what it held before."""
    if lib == "torch":
        torch = _torch("cuda")
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    from engine.device import cupy

    cp = cupy()
    try:
        from cupy.cuda.memory_hook import MemoryHook
    except ImportError:
        return None

    class Peak(MemoryHook):
        name = "PeakHook"

        def __init__(self):
            self.now = self.peak = 0

        def malloc_postprocess(self, **kw):  # CuPy passes device_id, size, mem_size, ...
            self.now += kw["mem_size"]
            self.peak = max(self.peak, self.now)

        def free_postprocess(self, **kw):
            self.now -= kw["mem_size"]

    hook = Peak()
    cp.cuda.Device().synchronize()
    with hook:
        step()
        cp.cuda.Device().synchronize()
    return hook.peak / 2**20


def _peak(step: Callable[[], None], device: str, lib: str) -> float | None:
    return peak_rss_mib(step) if device == "cpu" else peak_cuda_mib(step, lib)


# Timing ------------------------------------------------------------------------------------
def _auto_repeats(step_s: float) -> int:
    """Timed steps per build for about STEP_BUDGET_S seconds, between MIN and MAX."""
    return int(min(MAX_REPEATS, max(MIN_REPEATS, STEP_BUDGET_S / max(step_s, 1e-6))))


def bench_workload(
    w: Workload, device: str, builds: int, repeats: int | None, warmup: int, precision: str = "32"
) -> dict:
    """Medians (s) of ours and torch over `builds` fresh models x `repeats` steps in blocks
    (`repeats=None`: as many as fit STEP_BUDGET_S per build and library)."""
    torch = _torch(device)
    ours_sync, torch_sync = _syncs(device)
    mine, theirs, counts = [], [], []
    for b in range(builds):
        ours = w.build(ours_lib(device, precision))
        ref = w.build(torch_lib(device, precision)) if torch else None
        slowest = 0.0
        for _ in range(max(warmup, 1)):
            slowest = _time(ours, ours_sync)
            if ref:
                slowest = max(slowest, _time(ref, torch_sync))
        n = repeats or _auto_repeats(slowest)
        counts.append(n)
        samplers = [lambda fn=ours: _time(fn, ours_sync)]
        if ref:
            samplers.append(lambda fn=ref: _time(fn, torch_sync))
        step = -1 if b % 2 else 1  # torch's block first on odd builds
        times = time_in_blocks(samplers[::step], n, device)[::step]
        mine += times[0]
        if ref:
            theirs += times[1]
        if b == builds - 1:
            mem = (_peak(ours, device, "ours"), _peak(ref, device, "torch") if ref else None)
        del ours, ref
    m = statistics.median(mine)
    t = statistics.median(theirs) if theirs else None
    return {"ours": m, "torch": t, "ratio": m / t if t else None, "mem": mem, "steps": counts}


def bench_one_library(
    w: Workload, device: str, lib: str, repeats: int | None, warmup: int, precision: str = "32"
) -> dict:
    """One fresh model of one library in this process: the step times (s) after a warm-up, and
    the peak memory of one step."""
    build = ours_lib if lib == "ours" else torch_lib
    sync = _syncs(device)[0 if lib == "ours" else 1]
    step = w.build(build(device, precision))
    slowest = max(_time(step, sync) for _ in range(max(warmup, 1)))
    n = repeats or _auto_repeats(slowest)
    times = [_time(step, sync) for _ in range(n)]
    return {"times": times, "mem": _peak(step, device, lib), "steps": n}


def bench_separate(
    args: argparse.Namespace, threads: int, w: Workload, precision: str = "32"
) -> dict:
    """`args.builds` pairs of processes, one per library each, in turn (torch first on odd
    builds); medians over all timed steps and the per-build ratios."""
    times = {"ours": [], "torch": []}
    counts, build_ratios, mem = [], [], {}
    torch = _torch(args.device) is not None
    for b in range(args.builds):
        order = ["ours", "torch"] if torch else ["ours"]
        medians = {}
        for lib in order[:: -1 if b % 2 else 1]:
            r = _run_isolated(args, threads, w.name, lib, precision)
            times[lib] += r["times"]
            medians[lib] = statistics.median(r["times"])
            mem[lib] = r["mem"]
            if lib == "ours":
                counts.append(r["steps"])
        if torch:
            build_ratios.append(medians["ours"] / medians["torch"])
    m = statistics.median(times["ours"])
    t = statistics.median(times["torch"]) if torch else None
    # Fastest step over fastest step: on a loaded machine the minima are the steps that ran
    # least disturbed, so this ratio moves less than the medians' between runs.
    fastest = min(times["ours"]) / min(times["torch"]) if torch else None
    return {
        "ours": m, "torch": t, "ratio": m / t if t else None, "steps": counts,
        "mem": (mem.get("ours"), mem.get("torch")), "build_ratios": build_ratios,
        "min_ratio": fastest,
    }  # fmt: skip


def bench_overhead(device: str, samples: int = 7) -> dict:
    """Seconds per `a * b` on 16 floats that require grad (the graph is recorded)."""
    import engine

    torch = _torch(device)
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal((2, 16)).astype(np.float32)
    a = engine.tensor(a0, device=device, requires_grad=True)
    b = engine.tensor(b0, device=device, requires_grad=True)
    ours_sync, torch_sync = _syncs(device)

    def loop(x, y):
        def run():
            for _ in range(OVERHEAD_OPS):
                x * y

        return run

    ours = loop(a, b)
    ref = None
    if torch:
        ta = torch.tensor(a0, device=device, requires_grad=True)
        tb = torch.tensor(b0, device=device, requires_grad=True)
        ref = loop(ta, tb)
    mine, theirs = [], []
    for i in range(samples + 1):
        m = _time(ours, ours_sync) / OVERHEAD_OPS
        t = _time(ref, torch_sync) / OVERHEAD_OPS if ref else None
        if i:  # the first round is the warm-up
            mine.append(m)
            if t is not None:
                theirs.append(t)
    m = statistics.median(mine)
    t = statistics.median(theirs) if theirs else None
    return {"ours": m, "torch": t, "ratio": m / t if t else None}


def gemm_rate(device: str, n: int = 1024, samples: int = 5) -> dict:
    """float32 GEMM FLOP/s of our array library (NumPy / CuPy) and of torch, n x n x n."""
    torch = _torch(device)
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal((2, n, n)).astype(np.float32)
    ours_sync, torch_sync = _syncs(device)
    if device == "cpu":
        a, b = a0, b0
        mm = np.matmul
    else:
        from engine.device import cupy

        a, b = cupy().asarray(a0), cupy().asarray(b0)
        mm = cupy().matmul
    flops = 2.0 * n**3
    ours = flops / min(_time(lambda: mm(a, b), ours_sync) for _ in range(samples))
    ref = None
    if torch:
        ta, tb = torch.tensor(a0, device=device), torch.tensor(b0, device=device)
        ref = flops / min(_time(lambda: torch.mm(ta, tb), torch_sync) for _ in range(samples))
    return {"ours": ours, "torch": ref}


# Report ------------------------------------------------------------------------------------
def _fmt(value, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}{spec}}"


def _row(w: Workload, r: dict, rate: dict, precision: str = "32") -> str:
    floor = w.flops / rate["ours"] * 1e3 if w.flops else None
    name = w.name + ": " + w.description if precision == "32" else f"{w.name} {precision}"
    return (
        f"{name:<44}{r['ours'] * 1e3:9.2f}"
        f"{_fmt(r['torch'] and r['torch'] * 1e3, '.2f', 10)}{_fmt(r['ratio'], '.2f', 7)}"
        f"{_fmt(floor, '.2f', 10)}{_fmt(r['mem'][0], '.1f', 10)}{_fmt(r['mem'][1], '.1f', 10)}"
        f"{sum(r['steps']):7d}{_range(r.get('build_ratios')):>14}"
        f"{_fmt(r.get('min_ratio'), '.2f', 10)}"
    )


def _range(ratios: list[float] | None) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def _overhead_row(overhead: dict) -> str:
    return (
        f"{'overhead: a*b, 16 floats, grad (us)':<44}{overhead['ours'] * 1e6:9.2f}"
        f"{_fmt(overhead['torch'] and overhead['torch'] * 1e6, '.2f', 10)}"
        f"{_fmt(overhead['ratio'], '.2f', 7)}"
    )


def _host_cache() -> str:
    """engine.memory's policy as every workload's interpreter applies it in `_setup`."""
    from engine import memory

    mib = memory.applied_cache_mib()
    return f"{mib}MiB" if mib else "off"


def _processes(args) -> str:
    if args.in_process:
        return "one-for-all"
    return "one-per-workload" if args.same_process else "one-per-library"


def _header(args, threads: int, rate: dict, note: str | None) -> str:
    torch = _torch("cpu")
    version = torch.__version__ if torch else "absent"
    if torch and _torch(args.device) is None:
        version += " (no CUDA: ours only)"
    lines = [
        f"device={args.device} threads={threads} (BLAS and torch) builds={args.builds} "
        f"repeats={args.repeats or 'auto'} warmup={args.warmup} "
        f"torch={version} numpy={np.__version__} "
        f"python={sys.version.split()[0]} clock={'cpu' if args.cpu_time else 'wall'} "
        f"host_cache={_host_cache()} "
        f"processes={_processes(args)}",
    ]
    if note:
        lines.append(note)
    if args.device == "cpu" and "16-mixed" in args.precisions:
        lines.append(
            "16-mixed on the cpu: torch's float16 autocast has no float16 CPU kernels (slow by "
            "design); torch's CPU peer is its bf16-mixed row"
        )
    tgf = f"{rate['torch'] / 1e9:.1f}" if rate["torch"] else "-"
    lines.append(f"float32 GEMM 1024^3: ours {rate['ours'] / 1e9:.1f} GFLOP/s, torch {tgf} GFLOP/s")
    lines.append(
        f"{'workload':<44}{'ours ms':>9}{'torch ms':>10}{'ratio':>7}{'floor ms':>10}"
        f"{'ours MiB':>10}{'torch MiB':>10}{'steps':>7}{'build ratios':>14}{'min ratio':>10}"
    )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed steps per build (default: ~{STEP_BUDGET_S} s worth, "
        f"{MIN_REPEATS} to {MAX_REPEATS})",
    )
    p.add_argument("--builds", type=int, default=3, help="fresh models per workload")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per build")
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated names: " + ",".join(w.name for w in WORKLOADS) + ",overhead",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS and torch threads (default: the BLAS pool's size)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run every workload in this process (default: one fresh process each)",
    )
    p.add_argument(
        "--same-process",
        action="store_true",
        help="run both libraries in one process per workload (default: one process each)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="data parallel instead: CNN, DCGAN, VAE on N MPI ranks vs PyTorch DDP on gloo "
        "(benchmarks/distributed.py; --repeats is then its runs per configuration)",
    )
    p.add_argument(
        "--precision",
        default="32",
        help="comma-separated, of " + ",".join(PRECISIONS) + " (default 32)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one workload, JSON out
    p.add_argument("--lib", default=None, choices=("ours", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--cpu-time", action="store_true",
                   help="process CPU time instead of wall time (steadier on a busy machine; "
                   "use with --threads 1)")  # fmt: skip
    args = p.parse_args(argv)
    if args.cpu_time and args.device != "cpu":
        p.error("--cpu-time is for --device cpu")
    names = set(args.only.split(",")) if args.only else None
    unknown = (names or set()) - {w.name for w in WORKLOADS} - {"overhead"}
    if unknown:
        p.error(f"unknown workload(s) {sorted(unknown)}")
    if args.nproc is not None:  # benchmarks/distributed.py: say so rather than ignore options
        ignored = [
            opt for opt, used in (
                ("--device cuda", args.device != "cpu"), ("--threads", args.threads is not None),
                ("--cpu-time", args.cpu_time), ("--same-process", args.same_process),
                ("--in-process", args.in_process), ("--builds", args.builds != 3),
                ("--warmup", args.warmup != 2), ("--precision", args.precision != "32"),
            ) if used
        ]  # fmt: skip
        if ignored:
            p.error(f"--nproc (the data-parallel sweep) does not take {', '.join(ignored)}")
        from benchmarks.distributed import GLOBAL_BATCH  # noqa: PLC0415

        if args.only and set(args.only.split(",")) - set(GLOBAL_BATCH):
            p.error(f"--nproc runs only {','.join(GLOBAL_BATCH)}, not --only {args.only}")
    if args.in_process:
        args.same_process = True
    args.names = names
    args.precisions = [q for q in PRECISIONS if q in args.precision.split(",")]
    if set(args.precision.split(",")) - set(PRECISIONS):
        p.error(f"--precision: expected a comma-separated list of {', '.join(PRECISIONS)}")
    return args


def _busy_machine_mode(args: argparse.Namespace) -> str | None:
    """On a CPU already busier than its cores, wall times of two BLAS threads swing by 2-5x:
    unless threads or the clock were chosen, measure one thread each in CPU time, and say so."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    if args.device != "cpu" or load <= cores:
        return None
    if args.threads is None and not args.cpu_time:
        args.threads, args.cpu_time = 1, True
        return (
            f"busy machine (load average {load:.1f} on {cores} cores): one thread each and "
            "CPU time; pass --threads N to measure wall time anyway"
        )
    if not args.cpu_time:
        return f"warning: load average {load:.1f} on {cores} cores, wall times are noisy"
    return None


def _child_argv(
    args: argparse.Namespace, threads: int, name: str, lib: str | None, precision: str = "32"
) -> list[str]:
    argv = ["--child", name, "--device", args.device, "--builds", str(args.builds)]
    argv += ["--precision", precision]
    argv += ["--lib", lib] if lib else []
    argv += ["--warmup", str(args.warmup), "--threads", str(threads)]
    argv += ["--repeats", str(args.repeats)] if args.repeats else []
    return argv + (["--cpu-time"] if args.cpu_time else [])


def _run_isolated(
    args: argparse.Namespace, threads: int, name: str, lib: str | None = None, precision="32"
) -> dict:
    """One workload (of one library, or both) in a fresh interpreter: the allocator state left
    by the previous workloads moved ratios by up to 0.3 (benchmarks/NOTES.md)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    # Both libraries' processes load NumPy (and OpenBLAS) before tensortape, so they get the
    # short idle spin that importing tensortape first gives (kernels/__init__.py) from here;
    # torch's GEMMs do not run on OpenBLAS. Unless the caller set a value (A/B: 28 is the
    # default spin).
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", kernels.OPENBLAS_SPIN)
    argv = _child_argv(args, threads, name, lib, precision)
    cmd = [sys.executable, "-m", "benchmarks.run", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if done.returncode:
        raise SystemExit(f"benchmarks.run: workload {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _setup(args: argparse.Namespace) -> int:
    """Clock, threads and seeds for this process; returns the thread count. A process that
    runs torch alone never imports tensortape (nor its host-memory policy), one that runs
    ours alone never imports torch."""
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    if args.lib == "torch":
        threads = set_threads(args.threads)
        _torch(args.device).manual_seed(0)
        return threads
    import engine

    if args.device == "cuda" and not engine.cuda.is_available():
        raise SystemExit("benchmarks.run: --device cuda but no CUDA device is available")
    engine.memory.configure_from_env()  # keep freed host memory (README)
    threads = set_threads(args.threads, torch_too=args.lib is None)
    engine.manual_seed(0)
    torch = _torch(args.device) if args.lib is None else None
    if torch:
        torch.manual_seed(0)
    return threads


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.nproc is not None:
        from benchmarks import distributed  # noqa: PLC0415

        repeats = ["--repeats", str(args.repeats)] if args.repeats else []
        only = ["--only", args.only] if args.only else []
        return distributed.main(["--nproc", str(args.nproc), *repeats, *only])
    note = _busy_machine_mode(args)
    threads = _setup(args)
    if args.child:
        w = next(w for w in WORKLOADS if w.name == args.child)
        p = args.precisions[0]
        if args.lib:
            r = bench_one_library(w, args.device, args.lib, args.repeats, args.warmup, p)
        else:
            r = bench_workload(w, args.device, args.builds, args.repeats, args.warmup, p)
        print(json.dumps(r))
        return 0
    selected = [w for w in WORKLOADS if args.names is None or w.name in args.names]
    isolate = len(selected) > 1 and not args.in_process
    rate = gemm_rate(args.device)
    print(_header(args, threads, rate, note), flush=True)
    isolate = isolate or len(args.precisions) > 1
    for w in selected:
        for p in args.precisions:
            if not args.same_process:
                r = bench_separate(args, threads, w, p)
            elif isolate:
                r = _run_isolated(args, threads, w.name, precision=p)
            else:
                r = bench_workload(w, args.device, args.builds, args.repeats, args.warmup, p)
            print(_row(w, r, rate, p), flush=True)
    if args.names is None or "overhead" in args.names:
        print(_overhead_row(bench_overhead(args.device)))
    print(
        "memory: peak RSS during one step above the RSS before it (VmHWM reset, heap trimmed)"
        if args.device == "cpu"
        else "memory: peak bytes of each library's CUDA memory pool during one step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
