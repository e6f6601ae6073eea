"""`tensortape launch --nproc N script.py args`: N ranks under mpiexec -m mpi4py (a subprocess
with a timeout), the script's arguments passed through, a failing rank ending the job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_error, requires_mpi

from engine import memory
from tensortape import launch
from tensortape.tasks.common import RunError

SCRIPT = """
import sys
import engine
import engine.distributed as dist

dist.init_process_group()
t = engine.tensor([1.0])
dist.all_reduce(t)
rank = dist.get_rank()
open(sys.argv[1] + f".{rank}", "w").write(f"{dist.get_world_size()} {t.item()} {sys.argv[2:]}")
if "fail" in sys.argv and rank == 1:
    raise KeyError("rank 1 fails")
"""


def _launch(tmp_path, *args):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, "-m", "tensortape", "launch", "--nproc", "2", str(script)]
    cmd += [str(tmp_path / "out"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


@requires_mpi
def test_launch_runs_n_ranks_with_the_scripts_arguments(tmp_path):
    proc = _launch(tmp_path, "--lr", "0.1")
    assert proc.returncode == 0, proc.stderr
    for rank in (0, 1):
        assert (tmp_path / f"out.{rank}").read_text() == "2 2.0 ['--lr', '0.1']"


@requires_mpi
def test_launch_ends_the_job_non_zero_when_a_rank_raises(tmp_path):
    proc = _launch(tmp_path, "fail")
    assert proc.returncode != 0
    assert "KeyError: 'rank 1 fails'" in proc.stderr


HANG = """
import os, sys, time
import engine.distributed as dist

dist.init_process_group()
open(sys.argv[1] + f".{dist.get_rank()}", "w").write(str(os.getpid()))
if dist.get_rank() == 0:
    dist.barrier()  # waits for rank 1, which sleeps
time.sleep(600)
"""


@requires_mpi
def test_killing_the_launcher_ends_its_ranks(tmp_path):
    """A test's timeout (SIGKILL of `tensortape launch`, or of `train --nproc`) must not leave
    mpiexec and its ranks running, or waiting in a collective, for ever."""
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cmd = [sys.executable, "-m", "tensortape", "launch", "--nproc", "2", str(script)]
    launcher = subprocess.Popen(cmd + [str(tmp_path / "pid")], env=env)
    try:
        files = [tmp_path / f"pid.{rank}" for rank in (0, 1)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(f.exists() and f.read_text() for f in files):
            time.sleep(0.1)
        pids = [int(f.read_text()) for f in files]  # both ranks started (one waits, one sleeps)
    finally:
        launcher.kill()  # what subprocess.run's timeout does
        launcher.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "ranks outlived their killed launcher"


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_launch_command_and_its_errors(tmp_path):
    script = tmp_path / "t.py"
    script.write_text("")
    hosts = tmp_path / "hosts"
    hosts.write_text("node1:4\nnode2:4\n")
    args = type("A", (), {"nproc": 8, "hostfile": str(hosts), "script": str(script)})()
    args.script_args = ["--epochs", "3"]
    if Path(sys.executable).with_name("mpiexec").exists():
        cmd = launch.command(args)
        assert cmd[1:5] == ["-n", "8", "-f", str(hosts)]
        assert cmd[5:] == [sys.executable, "-m", "mpi4py", str(script), "--epochs", "3"]
    args.script = str(tmp_path / "missing.py")
    with pytest.raises(RunError, match="missing.py: no such file"):
        launch.command(args)


def test_launch_user_errors_are_one_line_naming_the_option_or_file(tmp_path, capsys, monkeypatch):
    script = tmp_path / "t.py"
    script.write_text("")
    before = sorted(tmp_path.iterdir())
    cases = [  # (argv, exit status, the error line)
        (["--nproc", "0", str(script)], 2, "argument --nproc: must be a positive integer, got '0'"),
        (["--nproc", "two", str(script)], 2, "argument --nproc: must be a positive integer"),
        (["--nproc", "2", str(tmp_path / "nope.py")], 1, f"script {tmp_path}/nope.py: no such"),
        (["--nproc", "2", str(tmp_path)], 1, f"script {tmp_path}: not a file"),
        (["--nproc", "2", "--hostfile", str(tmp_path / "hosts"), str(script)], 1,
         f"--hostfile {tmp_path}/hosts: no such file"),
    ]  # fmt: skip
    for argv, status, message in cases:
        code, line = cli_error(["launch", *argv], capsys)
        assert (code, line.split(": error: ")[0]) == (status, "tensortape launch"), line
        assert message in line, line
    monkeypatch.setattr(launch.sys, "executable", str(tmp_path / "bin" / "python"))
    code, line = cli_error(["launch", "--nproc", "2", str(script)], capsys)
    assert code == 1 and f"needs MPI: no mpiexec beside {tmp_path}/bin/python" in line
    assert sorted(tmp_path.iterdir()) == before


def test_launched_ranks_get_the_host_memory_policy_unless_told_otherwise(monkeypatch):
    """A script of your own never calls engine.memory.configure_from_env; the ranks get the
    `tensortape` command's policy from the environment (glibc reads it at start)."""
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", memory.ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    env = launch._env(2)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(memory.DEFAULT_CACHE_MIB * 2**20)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4096")  # the user's own setting wins
    assert launch._env(2)["MALLOC_TRIM_THRESHOLD_"] == "4096"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv(memory.ENV_VAR, "0")  # 0 leaves malloc alone, as for the command
    assert not {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(launch._env(2))


def test_a_malformed_host_cache_size_is_one_line(tmp_path, capsys, monkeypatch):
    script = tmp_path / "t.py"
    script.write_text("")
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    code, line = cli_error(["launch", "--nproc", "2", str(script)], capsys)
    assert code == 2, line
    assert line.startswith("tensortape launch: error: TENSORTAPE_HOST_CACHE_MB must be a whole")
