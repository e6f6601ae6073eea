"""engine.distributed: collectives on 2 ranks (mpiexec as a subprocess with a timeout), the
world of one without a launcher, failure behaviour, and DistributedSampler."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_mpi, run_ranks

import engine
import engine.distributed as dist
from engine.data import DataLoader, DistributedSampler, TensorDataset


@pytest.fixture
def world_of_one(monkeypatch):
    for var in dist._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def test_world_of_one_without_a_launcher(world_of_one):
    assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_rank() == 0
    t = engine.tensor([1.0, 2.0])
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    dist.broadcast(t, 0)
    dist.barrier()
    out = [engine.zeros(2)]
    dist.all_gather(out, t)
    np.testing.assert_array_equal(out[0].numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    with pytest.raises(RuntimeError, match="already called"):
        dist.init_process_group()
    with pytest.raises(ValueError, match="src=1"):
        dist.broadcast(t, 1)
    dist.broadcast_coalesced([t, engine.tensor([3], dtype="int64")], 0)
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="broadcast_coalesced: src=1"):
        dist.broadcast_coalesced([t], 1)
    with pytest.raises(TypeError, match="broadcast_coalesced: expected a Tensor"):
        dist.broadcast_coalesced([t.numpy()], 0)
    assert dist.broadcast_bytes(b"abc") == b"abc"
    assert dist.is_main_process()
    with pytest.raises(ValueError, match="unknown reduce op"):
        dist.all_reduce(t, op="mean")


def test_import_engine_does_not_import_mpi4py():
    import subprocess
    import sys

    code = "import engine, layers, engine.distributed, sys; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_uninitialized_and_bad_backend_are_clear_errors():
    assert not dist.is_initialized()
    assert dist.is_main_process()  # single-process code writes its files
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")


@requires_mpi
def test_collectives_on_two_ranks(tmp_path):
    proc, res, _ = run_ranks("collectives", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for rank, r in enumerate(res):
        assert r["rank"] == rank and r["world"] == 2 and r["backend"] == "mpi"
        assert r["local_rank"] == rank  # one machine
        assert r["sum"] == [0.0, 3.0, 6.0, 9.0]  # (1 + 2) * arange
        assert r["max"] == [1.0, 0.0]
        assert r["avg"] == [[1.5] * 3] * 2
        assert r["bcast"] == [10.0] * 3  # from the last rank
        assert r["gather"] == [[0, 0], [1, 1]]
        assert r["async"] == [2.0] * 5
        assert r["bytes"] == [0, 1, 2, 3, 255] * 200_000  # rank 0's 1 MB, read nowhere else
        assert r["empty"] == 0 and r["main"] == (rank == 0)
        _check_coalesced(r["coalesced"])


def _check_coalesced(got: dict) -> None:
    """The last rank's values everywhere, integers to the last bit: in one collective, and in
    buckets of at most 32 bytes (each tensor's bytes padded to 16: f32 | i64 | bool + 0-d |
    f64_T, over the cap, alone | the empty one)."""
    big = 2**60 + 4  # rank 1's: beyond float64's exact range
    assert got["one"]["calls"] == 1 and got["small"]["calls"] == 5
    for run in got.values():
        assert run["f32"] == [0.25, 1.25, 2.25, 3.25, 4.25]
        assert run["i64"] == [big, -big, 7]
        assert run["bool"] == [False, True, True]
        assert run["f64_0d"] == 1.0 / 3 + 1
        assert run["f64_T"] == [[0.0, 6.0], [2.0, 8.0], [4.0, 10.0]]
        assert run["empty"] == []


@requires_mpi
def test_a_rank_raising_ends_the_job_with_its_traceback(tmp_path):
    proc, _, seconds = run_ranks("fail", "raise", tmp_path=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert seconds < 30
    assert "ValueError: rank 1 fails at step 3" in proc.stderr  # a lone failing rank's own
    assert proc.stderr.count("Traceback") == 1


@requires_mpi
def test_ranks_failing_alike_show_one_traceback_rank_0s(tmp_path):
    """Every rank raises the same error (rank 1 first): rank 0 reports for the job, the other
    ranks stay silent instead of printing N copies of one traceback."""
    proc, _, seconds = run_ranks("fail", "both", tmp_path=tmp_path, timeout=60)
    assert proc.returncode != 0 and seconds < 30
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "ValueError: every rank fails at step 3 (this is rank 0)" in proc.stderr


@requires_mpi
def test_a_rank_leaving_early_is_a_clear_error_not_a_hang(tmp_path):
    proc, _, seconds = run_ranks("fail", "exit", tmp_path=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert seconds < 30
    assert "rank 1 has left the process group while rank 0 waits in all_reduce" in proc.stderr


# DistributedSampler ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, world, drop_last", [(10, 3, False), (10, 3, True), (4, 4, False)])
def test_sampler_shards_are_disjoint_covering_equal_and_deterministic(n, world, drop_last):
    data = list(range(n))
    shards = [
        list(DistributedSampler(data, world, r, shuffle=True, seed=7, drop_last=drop_last))
        for r in range(world)
    ]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1  # equal: every rank runs the same number of steps
    assert lengths.pop() == len(DistributedSampler(data, world, 0, drop_last=drop_last))
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat) == (n // world) * world  # disjoint, tail dropped
    else:
        assert set(flat) == set(data)  # covering; padding repeats the fewest samples
        assert len(flat) - len(set(flat)) == -n % world
    again = list(DistributedSampler(data, world, 0, seed=7, drop_last=drop_last))
    assert again == shards[0]  # deterministic for a seed and epoch


def test_sampler_epochs_differ_and_dataloader_uses_it():
    data = TensorDataset(np.arange(12, dtype=np.float32))
    s = DistributedSampler(data, num_replicas=2, rank=1, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(list(s) + list(DistributedSampler(data, 2, 0, seed=3)))
    s.set_epoch(0)
    loader = DataLoader(data, batch_size=4, sampler=s)
    assert len(loader) == 2
    seen = np.concatenate([b[0].numpy() for b in loader])
    np.testing.assert_array_equal(seen, np.array(first, np.float32))
    unshuffled = list(DistributedSampler(data, 2, 1, shuffle=False))
    assert unshuffled == [1, 3, 5, 7, 9, 11]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(data, sampler=s, shuffle=True)
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(data, num_replicas=2, rank=2)


# The cuda path in CI: the CuPy stand-in with its NCCL stand-in (MPI underneath) -------------


@requires_mpi
@pytest.mark.parametrize("gpus, backend", [(2, "nccl"), (1, "mpi")])
def test_cuda_tensors_over_nccl_or_host_staged_mpi(tmp_path, gpus, backend):
    """One simulated GPU per rank: NCCL (the default backend); fewer GPUs than ranks: the ranks
    share cuda:0 and CuPy arrays go through host memory and MPI. Both: collectives and 20 DDP
    steps with SyncBatchNorm equal to one cpu process with the double batch."""
    env = {"TENSORTAPE_TEST_SIM": "1", "TENSORTAPE_SIM_DEVICES": str(gpus)}
    proc, res, _ = run_ranks("cuda", tmp_path=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank, r in enumerate(res):
        assert r["backend"] == backend
        assert r["device"] == (f"cuda:{rank}" if gpus == 2 else "cuda:0")
        assert r["sum"] == [0.0, 3.0, 6.0, 9.0] and r["avg"] == [1.5] * 3
        assert r["bcast"] == [10.0] * 3 and r["gather"] == [[0.0, 0.5], [1.0, 1.5]]
        assert r["identical"]
        _check_coalesced(r["coalesced"])
    assert res[0]["max_diff"] <= 1e-5


@requires_mpi
def test_nccl_backend_without_a_gpu_per_rank_is_a_clear_error(tmp_path):
    env = {"TENSORTAPE_TEST_SIM": "1", "TENSORTAPE_SIM_DEVICES": "1"}
    env["TENSORTAPE_TEST_BACKEND"] = "nccl"
    proc, _, seconds = run_ranks("collectives", tmp_path=tmp_path, env=env)
    assert proc.returncode != 0 and seconds < 30
    assert "backend 'nccl' needs one GPU per local rank: 2 ranks on this machine" in proc.stderr
