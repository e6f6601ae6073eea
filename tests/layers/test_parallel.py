"""DistributedDataParallel, SyncBatchNorm and distributed_evaluate on 2 ranks (mpiexec as a
subprocess with a timeout; tests/mpi_worker.py computes, these tests assert), and in a world of
one."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_mpi, run_ranks

import engine
import engine.distributed as dist
import engine.functional as F
import layers as nn


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]


@requires_mpi
def test_two_ranks_train_like_one_process_with_the_double_batch(tmp_path):
    """100 steps, 2 ranks x batch 4 vs 1 process x batch 8: SGD-momentum, Nesterov and Adam
    with L2 weight decay, several buckets; with SyncBatchNorm too; plain BatchNorm differs."""
    proc, (r0, r1), _ = run_ranks("train", 100, tmp_path=tmp_path, timeout=120)
    _ok(proc)
    for key in ("momentum/None", "nesterov/None", "adam/None", "momentum/sync"):
        assert r0[key]["max_diff"] <= 1e-5, (key, r0[key])
        assert r0[key]["identical"] and r1[key]["identical"], key
        assert r0[key]["buckets"] > 1  # fused buckets, not one all-reduce per parameter
    assert r0["momentum/sync"]["running_var_diff"] <= 1e-5
    assert r0["momentum/bn"]["identical"]  # unsynced BN: replicas agree with each other...
    assert r0["momentum/bn"]["max_diff"] > 1e-2  # ...but not with one process (per-rank stats)


@requires_mpi
def test_buckets_start_during_backward(tmp_path):
    proc, (r0, _), _ = run_ranks("overlap", tmp_path=tmp_path)
    _ok(proc)
    assert r0["buckets"] >= 3
    assert [inside for _, inside in r0["log"]] == [True] * r0["buckets"]
    assert [b for b, _ in r0["log"]] == list(range(r0["buckets"]))  # in order on every rank
    ev = r0["events"]  # the last layers' buckets were on the wire before layer 1's grad existed
    assert ev.index("first layer grad") >= 2 and ev[0] == "all-reduce started"


@requires_mpi
def test_unused_parameters_and_no_sync(tmp_path):
    proc, res, _ = run_ranks("unused", tmp_path=tmp_path)
    _ok(proc)
    for rank, r in enumerate(res):
        np.testing.assert_allclose(r["a_grad"], np.full((2, 3), 1.5))  # mean of x = 1 and 2
        np.testing.assert_allclose(r["b_grad"], np.full((2, 3), 0.5))  # rank 0's 1, halved
        assert r["never_grad_is_none"]
        np.testing.assert_allclose(r["local_after_no_sync"], np.full((2, 3), rank + 1.0))
        np.testing.assert_allclose(r["synced_after_accumulation"], np.full((2, 3), 3.0))


@requires_mpi
def test_sync_batch_norm_uneven_batches_match_batch_norm_on_the_whole_batch(tmp_path):
    proc, (r0, _), _ = run_ranks("syncbn_uneven", tmp_path=tmp_path)
    _ok(proc)
    assert r0["out"] <= 1e-5 and r0["grad_x"] <= 1e-5 and r0["running_var"] <= 1e-6
    assert r0["grad_w"] <= 1e-4 and r0["grad_b"] <= 1e-4  # sums of 72 float32 terms


@requires_mpi
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_sync_batch_norm_double_backward_matches_batch_norm_on_the_whole_batch(tmp_path, device):
    """WGAN-GP and R1 through a SyncBatchNorm critic (linear and conv) on 2 ranks x 4 samples,
    float64: the averaged parameter gradients equal one process's BatchNorm critic on the 8
    samples, the all-ranks input penalty's x-gradient (a Hessian-vector product through the
    recorded backward, across ranks) matches central differences, and a plain step makes no
    more collectives than before (statistics, gradient sums, the bucket with DDP's used-map).
    cuda: a simulated GPU per rank (the CuPy and NCCL stand-ins), against one cpu process."""
    env = {"TENSORTAPE_TEST_SIM": "1", "TENSORTAPE_SIM_DEVICES": "2"} if device == "cuda" else {}
    proc, res, _ = run_ranks("syncbn_double", device, tmp_path=tmp_path, env=env, timeout=120)
    _ok(proc)
    assert [r["device"] for r in res] == (["cuda:0", "cuda:1"] if device == "cuda" else ["cpu"] * 2)
    for key in ("linear", "conv"):
        r0 = res[0][key]
        for name in ("wgan-gp", "r1"):
            assert r0[name] <= 1e-10 * max(1.0, r0[name + "_scale"]), (key, name, r0)
        for r in res:
            assert r[key]["identical"]
            assert r[key]["fd_grad_scale"] > 1e-3  # the differences compare something
            assert r[key]["fd_rel_err"] <= 1e-7, (key, r[key])
    # forward 1, backward 1, the bucket 1 (the used-map rides in it on the host; beside a
    # device bucket it is its own host all-reduce, +1); R1: backward 1 -> recorded 2, + their
    # 2 adjoints
    used_map = 1 if device == "cuda" else 0
    for r in res:
        assert r["plain_step_collectives"] == 3 + used_map
        assert r["r1_step_collectives"] == 6 + used_map


@requires_mpi
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_dcgan_step_makes_one_buffer_broadcast_and_one_collective_per_bucket(tmp_path, device):
    """The benchmark's DCGAN step (small) on 2 ranks. Its generator's six BatchNorm buffers go
    in one coalesced broadcast (before: six), the used-map rides in the last bucket (before:
    an all-reduce of its own after each of the three backward bucket sets): 4 collectives a
    step, down from 12; SyncBatchNorm adds its own 2 per layer. cuda (the CuPy and NCCL
    stand-ins): the buckets are device arrays, so each backward's used-map is one host
    all-reduce more. Rank 1's buffers, made to differ after DDP was built, are rank 0's again
    at the next forward: num_batches_tracked, an int64 beyond float64's exact range, counts on
    exactly; with SyncBatchNorm every buffer is bit-equal on both ranks after the steps, and
    the run equals one process with the whole batch."""
    env = {"TENSORTAPE_TEST_SIM": "1", "TENSORTAPE_SIM_DEVICES": "2"} if device == "cuda" else {}
    proc, res, _ = run_ranks("dcgan_collectives", device, tmp_path=tmp_path, env=env, timeout=120)
    _ok(proc)
    used_maps = 3 if device == "cuda" else 0  # D's backward, then D's and G's
    big = 2**60 + 3
    for r in res:
        assert r["bn"]["step_collectives"] == [4 + used_maps] * 3  # buffers 1, buckets 3
        assert r["sync"]["step_collectives"] == [8 + used_maps] * 3  # + 2 SyncBN x (fwd, bwd)
        for key in ("bn", "sync"):
            assert r[key]["num_batches_tracked"] == [big + 3, big + 3], key  # rank 0's, + 3
            assert r[key]["identical"], key
        assert r["sync"]["buffers_identical"]
        assert not r["bn"]["buffers_identical"]  # per-rank statistics after the last forward
    assert res[0]["sync"]["max_diff"] <= 1e-5


@requires_mpi
def test_the_gan_trainer_runs_wgan_gp_through_sync_batch_norm_on_two_ranks(tmp_path):
    proc, res, _ = run_ranks("gan_gp_syncbn", tmp_path=tmp_path, timeout=120)
    _ok(proc)
    for r in res:
        assert r["kinds"] == ["SyncBatchNorm", "SyncBatchNorm"]
        assert r["identical"] and r["finite"] and r["steps"] == 8


@requires_mpi
@pytest.mark.parametrize("case", ["gan", "vae"])
def test_generative_steps_match_one_process(tmp_path, case):
    proc, (r0, r1), _ = run_ranks(case, 20, tmp_path=tmp_path)
    _ok(proc)
    assert r0["max_diff"] <= 1e-5 and r0["identical"] and r1["identical"]


@requires_mpi
def test_distributed_evaluate_counts_every_sample_once(tmp_path):
    proc, res, _ = run_ranks("evaluate", tmp_path=tmp_path)
    _ok(proc)
    for r in res:
        assert r["got"]["count"] == 37  # 37 samples on 2 ranks: no padded duplicate
        assert r["got"]["loss"] == pytest.approx(r["ref"]["loss"], rel=1e-6)
        assert r["got"]["accuracy"] == pytest.approx(r["ref"]["accuracy"], rel=1e-6)


# A world of one (no launcher) ---------------------------------------------------------------


@pytest.fixture
def world_of_one(monkeypatch):
    for var in dist._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def test_ddp_in_a_world_of_one_leaves_gradients_as_they_are(world_of_one):
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ref = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ref.load_state_dict(model.state_dict())
    ddp = nn.parallel.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == ["module." + k for k in model.state_dict()]
    x = engine.randn(5, 3)
    ddp(x).sum().backward()
    ref(x).sum().backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_sync_batch_norm_is_batch_norm_in_a_world_of_one(world_of_one):
    x = engine.randn(6, 3, 2, 2)
    net = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    assert isinstance(net[0], nn.SyncBatchNorm)
    np.testing.assert_allclose(net(x).numpy(), nn.BatchNorm2d(3)(x).numpy(), rtol=1e-6, atol=1e-6)


def test_ddp_needs_a_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_distributed_evaluate_without_a_group_is_a_plain_evaluation():
    engine.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = engine.randn(9, 4), engine.tensor(np.arange(9) % 3)
    got = nn.parallel.distributed_evaluate(model, engine.data.TensorDataset(x, y), 4)
    assert got["count"] == 9
    assert got["loss"] == pytest.approx(float(F.cross_entropy(model(x), y).item()), rel=1e-6)
