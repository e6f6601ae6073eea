"""`tensortape launch --nproc N script.py [args]`: start N ranks of a training script with MPI.

In the spirit of torchrun, on MPI: it runs the `mpiexec` installed beside this Python (MPICH's,
from the `mpi` extra) as `mpiexec -n N python -m mpi4py script.py args`. The `-m mpi4py` runner
turns an unhandled exception on any rank into an MPI_Abort of the whole job (without it the
other ranks would wait forever in their next collective). Each rank gets cores // N BLAS threads
unless OMP_NUM_THREADS is set, and the `tensortape` command's host memory policy
(engine/memory.py) through malloc's environment variables. `--hostfile` spreads the ranks over
machines (MPICH's hydra `-f`: one `host[:slots]` per line; the script and its environment must
be on every machine).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from .tasks.common import RunError, UsageError, positive_int

_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def add_arguments(parser) -> None:
    parser.add_argument(
        "--nproc", type=positive_int, required=True, help="number of ranks (processes)"
    )
    parser.add_argument(
        "--hostfile",
        default=None,
        help="MPI hostfile: one host[:slots] a line (default: this machine only)",
    )
    parser.add_argument("script", help="the training script (it calls init_process_group)")
    parser.add_argument("script_args", nargs="...", help="arguments passed to the script")


def mpiexec() -> Path:
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        raise RunError(
            f"needs MPI: no mpiexec beside {sys.executable}; "
            "pip install 'tensortape[mpi]' (mpi4py and MPICH)"
        )
    return path


def _check_file(path: str, what: str) -> None:
    if not Path(path).exists():
        raise RunError(f"{what} {path}: no such file")
    if not Path(path).is_file():
        raise RunError(f"{what} {path}: not a file")


def command(args) -> list[str]:
    """The mpiexec command line; a RunError (one line, exit status 1) names a missing file.
    (--nproc < 1 never gets here: its option type refuses it with exit status 2.)"""
    _check_file(args.script, "script")
    if args.hostfile:
        _check_file(args.hostfile, "--hostfile")
    cmd = [str(mpiexec()), "-n", str(args.nproc)]
    if args.hostfile:
        cmd += ["-f", args.hostfile]
    return cmd + [sys.executable, "-m", "mpi4py", args.script, *args.script_args]


def _env(nproc: int) -> dict:
    from engine import memory  # noqa: PLC0415

    env = dict(os.environ)
    # the host memory policy of the `tensortape` command (engine/memory.py), for ranks that
    # run a script of your own: malloc reads it from the environment at start
    for name, value in memory.malloc_env(memory.cache_mib_from_env()).items():
        env.setdefault(name, value)
    if "OMP_NUM_THREADS" not in env:  # share this machine's cores between its ranks
        threads = str(max(1, (os.cpu_count() or 1) // nproc))
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def _call(cmd: list[str], nproc: int) -> int:
    """Run mpiexec and return its status. On Linux it is asked for SIGTERM when this launcher
    dies, even of SIGKILL (a test's or a batch system's timeout): mpiexec then ends its ranks,
    which would otherwise run on, or wait in a collective, forever. (Killing mpiexec itself
    already ends them; elsewhere, without prctl, kill mpiexec rather than the launcher.)"""
    return subprocess.call(cmd, env=_env(nproc), preexec_fn=_parent_death_signal())


def _parent_death_signal():
    try:  # looked up here, before the fork: the child only makes the call
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run(args) -> int:
    return _call(command(args), args.nproc)


def train_on_ranks(nproc: int, argv: list[str]) -> int:
    """`tensortape train ... --nproc N` outside an MPI job: the same command on N ranks."""
    cmd = [str(mpiexec()), "-n", str(nproc), sys.executable, "-m", "mpi4py", "-m", "tensortape"]
    return _call(cmd + list(argv), nproc)


def join_ranks(nproc: int) -> None:
    """In a rank of an MPI job: join the process group; ranks > 0 print nothing (rank 0 shows
    the bars, summaries and warnings; an error is rank 0's line, or the failing rank's own
    when rank 0 does not fail: `engine.distributed.reports_failure`)."""
    from engine import distributed as dist  # noqa: PLC0415

    dist.init_process_group()
    world = dist.get_world_size()
    if nproc > 1 and world != nproc:
        raise UsageError(f"--nproc {nproc} but this MPI job has {world} ranks")
    if dist.get_rank() > 0:  # rank 0 speaks for the job; a failing rank's error still shows
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        warnings.simplefilter("ignore")  # the same warnings as rank 0's, N times over
