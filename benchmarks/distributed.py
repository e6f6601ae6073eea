"""Data-parallel throughput: ours on MPI vs PyTorch DDP on gloo, and the fused all-reduce's
bandwidth against a raw mpi4py Allreduce of the same buffer (the floor).

    python -m benchmarks.distributed [--nproc 2] [--steps 20] [--only cnn,dcgan,vae]

For each workload (the CNN, DCGAN and VAE steps of benchmarks/workloads.py at a fixed GLOBAL
batch: 64, 64, 128) it times one process with 1 and with `nproc` BLAS threads, and `nproc`
ranks with one thread each (each rank a batch of global / nproc), for both libraries; samples/s
is the global batch over the step time of the slowest rank (each rank's median of 3 blocks of
`steps` steps, after 3 warm-up steps; the maximum over ranks: what a synchronised job runs at,
and the same measure for the runs without all-reduce, whose ranks do not wait for each other).
Scaling efficiency = (nproc ranks' samples/s) / (nproc x 1 process 1 thread).
Each configuration runs in its own processes (`mpiexec -n N python -m mpi4py` for ranks); the
whole sweep repeats `--repeats` times and the table shows the median (min-max) of the runs.
Also reachable as `python -m benchmarks.run --nproc 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import kernels
from benchmarks.workloads import _data, _dcgan_models, ours_lib, torch_lib

GLOBAL_BATCH = {"cnn": 64, "dcgan": 64, "vae": 128}


def _cnn(lib, b):
    nn = lib.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    wrapped = lib.ddp(model)
    opt = lib.optim.SGD(wrapped.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    xa, ya = _data(2, ((b, 1, 28, 28), "normal"), ((b,), 10))
    x, y = lib.tensor(xa), lib.tensor(ya)

    def step():
        opt.zero_grad()
        lib.F.cross_entropy(wrapped(x), y).backward()
        opt.step()

    return step


def _dcgan(lib, b):
    g, d = _dcgan_models(lib.nn)
    g, d = lib.ddp(g), lib.ddp(d)
    opt_g = lib.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = lib.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_a, z_a = _data(5, ((b, 1, 28, 28), "unit"), ((b, 64), "normal"))
    real, z = lib.tensor(real_a * 2 - 1), lib.tensor(z_a)
    labels = lib.tensor(np.concatenate([np.ones((b, 1)), np.zeros((b, 1))]).astype(np.float32))
    ones = lib.tensor(np.ones((b, 1), np.float32))
    bce = lib.F.binary_cross_entropy_with_logits

    def step():
        fake = g(z)
        opt_d.zero_grad()  # one D forward on real and fake (DDP: one forward per backward)
        bce(d(lib.cat([real, fake.detach()])), labels).backward()
        opt_d.step()
        opt_g.zero_grad()
        bce(d(fake), ones).backward()
        opt_g.step()

    return step


def _vae(lib, b):
    nn, F = lib.nn, lib.F

    class VAE(nn.Module):  # the loss inside forward: DDP sees one forward per backward
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40))
            self.dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

        def forward(self, x, eps):
            h = self.enc(x)
            mu, logvar = h[:, :20], h[:, 20:]
            z = mu + (0.5 * logvar).exp() * eps
            rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
            kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum()
            return (rec + kl) / b

    vae = lib.ddp(VAE())
    opt = lib.optim.Adam(vae.parameters(), lr=1e-3)
    (xa,) = _data(6, ((b, 784), "unit"))
    x = lib.tensor(xa)

    def step():
        opt.zero_grad()
        vae(x, lib.randn(b, 20)).backward()
        opt.step()

    return step


BUILDERS = {"cnn": _cnn, "dcgan": _dcgan, "vae": _vae}


# One rank -------------------------------------------------------------------------------------


def _setup(lib_name: str):
    """(lib, rank, world) with DDP for the launched ranks, none for a single process."""
    world = int(os.environ.get("PMI_SIZE", "1"))
    rank = int(os.environ.get("PMI_RANK", "0"))
    if lib_name == "ours":
        import engine
        import engine.distributed as dist
        import engine.memory
        import layers

        lib = ours_lib("cpu")
        engine.memory.configure_from_env()  # keep freed host memory, as `benchmarks.run` does
        dist.init_process_group("mpi")
        comm = world > 1 and os.environ.get("TT_BENCH_NO_COMM") != "1"
        lib.ddp = layers.parallel.DistributedDataParallel if comm else (lambda m: m)
        lib.cat = engine.cat
        lib.barrier = dist.barrier
    else:
        import torch
        import torch.distributed as tdist

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        lib = torch_lib("cpu")
        lib.cat = torch.cat
        lib.barrier = lambda: None
        lib.ddp = lambda m: m
        if world > 1:
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "29533")
            tdist.init_process_group("gloo", rank=rank, world_size=world)
            lib.ddp = torch.nn.parallel.DistributedDataParallel
            lib.barrier = tdist.barrier
    return lib, rank, world


def worker(lib_name: str, workload: str, steps: int, out: str) -> None:
    lib, rank, world = _setup(lib_name)
    if lib_name == "ours":
        import engine

        engine.manual_seed(0)
    else:
        import torch

        torch.manual_seed(0)
    step = BUILDERS[workload](lib, GLOBAL_BATCH[workload] // world)
    for _ in range(3):
        step()
    blocks = []
    for _ in range(3):
        lib.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        blocks.append((time.perf_counter() - t0) / steps)
    step_s = _slowest_rank(float(np.median(blocks)), world)
    if rank == 0:
        Path(out).write_text(json.dumps({"step_s": step_s}))


def _slowest_rank(step_s: float, world: int) -> float:
    """The largest of the ranks' step times. Rank 0's alone would do for DDP (its ranks wait
    for each other every step) but not for the ranks without all-reduce: there a rank on a
    busier core runs slower unseen, and the job is not done until it is."""
    if world == 1:
        return step_s
    from mpi4py import MPI  # every rank runs under `python -m mpi4py`

    return float(MPI.COMM_WORLD.allreduce(step_s, op=MPI.MAX))


def allreduce_worker(out: str, mib: float = 4.0, repeats: int = 50) -> None:
    """Our DDP bucket all-reduce (Iallreduce + wait, as a bucket) vs the raw blocking call and
    the raw non-blocking one (the same MPI call ours makes, without our bookkeeping)."""
    from mpi4py import MPI

    import engine.distributed as dist

    dist.init_process_group("mpi")
    buf = np.ones(int(mib * 2**20) // 4, np.float32)
    comm = MPI.COMM_WORLD
    calls = {
        "raw mpi4py Allreduce": lambda: comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM),
        "raw mpi4py Iallreduce": lambda: comm.Iallreduce(MPI.IN_PLACE, buf, MPI.SUM).Wait(),
        "ours (bucket)": lambda: dist.all_reduce_array(buf).wait(),
    }
    times = {name: [] for name in calls}
    for i in range(repeats + 5):  # interleaved, so both see the same machine load
        for name, call in calls.items():
            comm.Barrier()
            t0 = time.perf_counter()
            call()
            if i >= 5:
                times[name].append(time.perf_counter() - t0)
    res = {name: float(np.median(t)) for name, t in times.items()}
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"bytes": buf.nbytes, "seconds": res}))


# The driver -----------------------------------------------------------------------------------


def _run(args: list[str], nproc: int, threads: int, comm: bool = True) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TT_BENCH_NO_COMM="0" if comm else "1",
    )
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", kernels.OPENBLAS_SPIN)  # as `benchmarks.run`
    for var in ("PMI_RANK", "PMI_SIZE"):
        env.pop(var, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [sys.executable, "-m", "benchmarks.distributed", "--worker", *args, out]
        if nproc > 1:
            mpiexec = Path(sys.executable).parent / "mpiexec"
            cmd = [str(mpiexec), "-n", str(nproc), sys.executable, "-m", "mpi4py", *cmd[1:]]
        subprocess.run(cmd, check=True, timeout=600, env=env)
        return json.loads(Path(out).read_text())


def _spread(values: list[float], fmt: str = ".0f") -> str:
    """median (min-max) of repeated measurements."""
    lo, hi = min(values), max(values)
    return f"{np.median(values):{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


#: (ranks, threads, all-reduce) of the timed configurations; the last: N ranks of our step with
#: no DDP, the machine's own ceiling for N processes (shared cores, memory bandwidth).
_SHAPES = ((1, 1, True), (1, "n", True), ("n", 1, True), ("n", 1, False))


def _configs(workloads: list[str], libs: list[str], n: int) -> list[tuple]:
    """(workload, lib, ranks, threads, comm) of every timed configuration."""
    out = []
    for w in workloads:
        for lib in libs:
            for r, t, comm in _SHAPES:
                if comm or lib == "ours":
                    out.append((w, lib, n if r == "n" else r, n if t == "n" else t, comm))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="runs of every configuration")
    p.add_argument("--only", default="cnn,dcgan,vae")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        if a.worker[0] == "allreduce":
            allreduce_worker(a.worker[1])
        else:
            worker(a.worker[0], a.worker[1], int(a.worker[2]), a.worker[3])
        return 0
    n, workloads = a.nproc, a.only.split(",")
    unknown = sorted(set(workloads) - set(GLOBAL_BATCH))
    if unknown:
        p.error(f"--only: unknown workload(s) {unknown}; known: {','.join(GLOBAL_BATCH)}")
    if n < 2 or a.steps < 1 or a.repeats < 1:
        p.error("--nproc must be at least 2, --steps and --repeats at least 1")
    libs = ["ours"] + ([] if a.no_torch else ["torch"])
    configs = _configs(workloads, libs, n)
    rates = {c: [] for c in configs}
    reduce_s: dict[str, list[float]] = {}
    nbytes = 0
    for i in range(a.repeats):  # repeat the whole sweep: load drift hits every config alike
        for c in configs:
            w, lib, ranks, threads, comm = c
            step_s = _run([lib, w, str(a.steps)], ranks, threads, comm)["step_s"]
            rates[c].append(GLOBAL_BATCH[w] / step_s)
            shape = f"{ranks}r x {threads}t" + ("" if comm else ", no all-reduce")
            print(f"run {i + 1}: {w} {lib} {shape}: {rates[c][-1]:.0f} samples/s", flush=True)
        r = _run(["allreduce"], n, 1)
        nbytes = r["bytes"]
        for name, seconds in r["seconds"].items():
            reduce_s.setdefault(name, []).append(seconds)
            print(f"run {i + 1}: all-reduce {name}: {seconds * 1e3:.2f} ms", flush=True)
    print(
        f"samples/s (global batch fixed), CPU, {os.cpu_count()} cores, median (min-max) of "
        f"{a.repeats} runs of {a.steps} steps; efficiency = {n} ranks / ({n} x 1 process 1 thread)"
    )
    print(
        f"{'workload':8} {'lib':6} {'1p x 1t':>16} {f'1p x {n}t':>16} {f'{n}r x 1t':>16} eff. "
        f"{f'{n}r, no all-reduce':>18}"
    )
    for w in workloads:
        for lib in libs:
            cols = [rates[(w, lib, n, 1, False)]] if lib == "ours" else []
            cols = (
                [rates[(w, lib, 1, 1, True)], rates[(w, lib, 1, n, True)]]
                + [rates[(w, lib, n, 1, True)]]
                + cols
            )
            eff = np.median(cols[2]) / (n * np.median(cols[0]))
            cells = [f"{_spread(c):>16}" for c in cols[:3]] + [f"{eff:4.2f}"]
            cells += [f"{_spread(c):>18}" for c in cols[3:]]
            print(f"{w:8} {lib:6} " + " ".join(cells))
        if "torch" in libs:
            ratio = np.median(rates[(w, "torch", n, 1, True)]) / np.median(
                rates[(w, "ours", n, 1, True)]
            )
            print(f"{w:8} {n}-rank step time ours / PyTorch DDP (gloo): {ratio:.2f}")
    mb = nbytes / 1e6
    for name, seconds in reduce_s.items():
        ms = [s * 1e3 for s in seconds]
        gbs = [mb / s / 1e3 for s in seconds]
        print(
            f"all-reduce {mb:.1f} MB on {n} ranks, {name:22}: {_spread(ms, '.2f')} ms, "
            f"{_spread(gbs, '.2f')} GB/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
