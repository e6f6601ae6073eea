"""The Trainer on 2 ranks (mpiexec as a subprocess with a timeout; tests/mpi_worker.py's
`trainer` case): replicas stay identical, rank 0 alone writes, a resumed run is exact; on
resume rank 0 alone reads the checkpoint and broadcasts it (rank 1's path does not exist)."""

from __future__ import annotations

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
