"""The Trainer on 2 ranks (mpiexec as a subprocess with a timeout; tests/mpi_worker.py's
`trainer` case): replicas stay identical, rank 0 alone writes, a resumed run is exact; on
resume rank 0 alone reads the checkpoint and broadcasts it (rank 1's path does not exist)."""

from __future__ import annotations

import numpy as np
from helpers import requires_mpi, run_ranks


@requires_mpi
def test_trainer_fits_on_two_ranks_and_resumes_exactly(tmp_path):
    proc, (r0, r1), _ = run_ranks("trainer", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert r0["wrote"] and not r1["wrote"]  # rank 1's out_dir never created
    assert r0["identical"] and r1["identical"]
    for r in (r0, r1):  # 1 epoch + resume == 2 epochs, rank 1 never reading the file
        assert r["resume_diff"] == 0.0 and r["resume_momentum_diff"] == 0.0
        assert r["resume_steps"] == [2, 16, 2, 16]  # 8 steps of 4 per rank
    assert r0["resume_history"]  # rank 0's losses (rank 1 took the history rank 0 wrote)
    assert (tmp_path / "run_rank0" / "checkpoint.npz").exists()


@requires_mpi
def test_batchnorm_becomes_syncbatchnorm_on_ranks_and_matches_one_process(tmp_path):
    """2 ranks x batch 4 == 1 process x batch 8 for a BatchNorm model (48 steps), because fit
    converts BatchNorm to SyncBatchNorm on ranks; with sync_batchnorm = False it differs."""
    import mpi_worker

    ref = mpi_worker.bn_state(mpi_worker.bn_trainer_run(None, 8))  # one process, world of 1
    proc, (r0, r1), _ = run_ranks("trainer_bn", "sync", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert r0["kind"] == "SyncBatchNorm" and r0["identical"] and r1["identical"]
    # parameters, running mean and var (up to ~21) after 48 float32 steps: to a few ulps (two
    # float32 roundings of the same batch-norm formulas moved the one-process values by 1.2e-5)
    for got, want in zip(r0["state"], ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    proc, (p0, _), _ = run_ranks("trainer_bn", "plain", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert p0["kind"] == "BatchNorm1d"
    assert np.abs(np.array(p0["state"][0]) - ref[0]).max() > 1e-3  # per-rank statistics


@requires_mpi
def test_a_mid_epoch_checkpoint_on_two_ranks_resumes_exactly(tmp_path):
    """save_checkpoint from a callback at global step 11 (epoch 2, step 3 of 8) on every rank,
    then the job stops; the resumed run equals the uninterrupted one exactly (cpu) because the
    file holds every rank's random state and the loader's position."""
    proc, res, _ = run_ranks("trainer_midepoch", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in res:
        assert r["rank_rng"] == 2  # one random state per rank in the file
        assert r["diff"] == 0.0 and r["identical"]
        assert r["steps"] == [3, 24, 3, 24]
        assert r["diff_one_rng"] > 1e-6  # rank 0's random state on rank 1 changes the run


@requires_mpi
def test_a_checkpoint_saved_by_rank_0_alone_is_written_or_refused_without_a_hang(tmp_path):
    """save_checkpoint under `if trainer.is_main_process:` (PyTorch's idiom): written at an
    epoch's end and after fit; mid-epoch (a collective) the job stops with one clear error
    within the timeout instead of misreading the other ranks' gradient all-reduce."""
    (tmp_path / "end").mkdir(), (tmp_path / "mid").mkdir()
    proc, res, _ = run_ranks("trainer_rank0_save", "end", tmp_path=tmp_path / "end", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert res[0]["files"] == res[1]["files"] == ["after.npz", "step.npz"]
    proc, res, _ = run_ranks("trainer_rank0_save", "midway", tmp_path=tmp_path / "mid", timeout=120)
    assert proc.returncode != 0 and res == [None, None]
    assert "save_checkpoint mid-epoch on ranks is a collective" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "mid" / "step.npz").exists()


def test_a_mid_epoch_checkpoint_in_one_process_resumes_exactly(tmp_path):
    """The same without ranks: save_checkpoint(path) from a callback takes the loader fit is
    running, so the resumed run skips the batches done and continues from the saved random
    state."""
    import mpi_worker

    import generative.callbacks

    class SaveAndStop(generative.callbacks.Callback):
        def on_log(self, trainer, values):
            if trainer.global_step == 11:
                trainer.save_checkpoint(tmp_path / "mid.npz")
                raise mpi_worker._Stop

    whole = mpi_worker._trainer_run(None, 3, 8)
    try:
        mpi_worker._trainer_run(None, 3, 8, callbacks=[SaveAndStop()], log_every=1)
    except mpi_worker._Stop:
        pass
    resumed = mpi_worker._trainer_run(None, 3, 8, resume_from=tmp_path / "mid.npz")
    assert resumed.global_step == whole.global_step == 24
    np.testing.assert_array_equal(mpi_worker._flat(resumed.net), mpi_worker._flat(whole.net))


_RESTART = (
    "checkpoint saved mid-epoch on {saved} (3 steps into epoch 2), resumed on {now}: the "
    "epoch restarts from its first batch, its first 3 steps trained again (--nproc {n} "
    "continues exactly)"
)


@requires_mpi
def test_two_ranks_checkpoints_resumed_in_one_process(tmp_path):
    """Saved on 2 ranks, resumed in one process (no noise, no shuffling). At an epoch's end
    the run continues as if one process had trained throughout (to float rounding); mid-epoch
    it cannot be exact (the shards and per-rank random states belong to 2 ranks): the epoch
    restarts from its first batch, with one warning, and equals a resume from that epoch's
    start."""
    import mpi_worker
    import pytest

    proc, _, _ = run_ranks("trainer_recount", "save", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = mpi_worker._trainer_run(None, 3, 8, noise=0.0)
    end, warned = mpi_worker.resume_warnings(tmp_path / "end" / "checkpoint.npz")
    assert warned == [] and end.global_step == 24
    np.testing.assert_allclose(mpi_worker._flat(end.net), mpi_worker._flat(whole.net), atol=1e-5)
    mpi_worker.restart_copy(tmp_path / "mid.npz", tmp_path / "mid_start.npz", world=1)
    with pytest.warns(UserWarning) as caught:
        t = mpi_worker._trainer_run(None, 3, 8, resume_from=tmp_path / "mid.npz", noise=0.0)
    assert [str(w.message) for w in caught] == [
        _RESTART.format(saved="2 ranks", now="1 process", n=2)
    ]
    assert (t.epoch, t.global_step) == (3, 27)  # 11, then epoch 2 in full (8) and epoch 3 (8)
    ref, warned = mpi_worker.resume_warnings(tmp_path / "mid_start.npz")
    assert warned == []
    np.testing.assert_array_equal(mpi_worker._flat(t.net), mpi_worker._flat(ref.net))


@requires_mpi
def test_one_process_checkpoints_resumed_on_two_ranks(tmp_path):
    """The other way: saved in one process, resumed on 2 ranks; rank 0 alone warns."""
    import mpi_worker

    whole = mpi_worker._trainer_run(None, 3, 8, noise=0.0)
    mpi_worker._trainer_run(tmp_path / "end", 1, 8, noise=0.0)
    mpi_worker.stopped_run(tmp_path / "mid.npz", noise=0.0)
    mpi_worker.restart_copy(tmp_path / "mid.npz", tmp_path / "mid_start.npz", world=2)
    proc, (r0, r1), _ = run_ranks("trainer_recount", "resume", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert r0["warned"] == [_RESTART.format(saved="1 process", now="2 ranks", n=1)]
    assert r1["warned"] == []
    for r in (r0, r1):
        assert r["steps"] == [3, 27, 3, 24] and r["identical"]
        assert r["restart_diff"] == 0.0
        np.testing.assert_allclose(r["end_net"], mpi_worker._flat(whole.net), atol=1e-5)
