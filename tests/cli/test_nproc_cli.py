"""`tensortape train <verb> --nproc 2`: one set of outputs (rank 0's), the accuracy of the
one-process run with the same global batch, and --resume on 2 ranks equal to the uninterrupted
run (subprocesses with timeouts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import requires_mpi

ROOT = Path(__file__).resolve().parents[2]


def _train(verb, out, *args, timeout=300, pythonpath=None):
    cmd = [sys.executable, "-m", "tensortape", "train", verb, "--out", str(out), "--no-progress"]
    cmd += ["--device", "cpu", *args]
    path = os.pathsep.join([str(ROOT)] + ([pythonpath] if pythonpath else []))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "metrics.json").read_text())


def _kinds(folder: Path) -> set[str]:
    """The output files by kind: TensorBoard event files are named by time, pid and step."""
    return {
        "events" if p.name.startswith("events.out.tfevents.") else p.name for p in folder.iterdir()
    }


def _accuracy(metrics):
    return metrics["history"]["test_accuracy"][-1]


@requires_mpi
def test_classifier_on_two_ranks_matches_one_process(tmp_path):
    args = ["--model", "mlp", "--batch-size", "32", "--epochs", "2"]
    _, one = _train("classifier", tmp_path / "one", *args)
    proc, two = _train("classifier", tmp_path / "two", *args, "--nproc", "2")
    assert two["epochs"] == 2 and len(two["history"]["epoch"]) == 2
    summaries = [line for line in proc.stdout.splitlines() if "accuracy" in line.lower()]
    assert len(summaries) == 1  # rank 0's summary; rank 1 prints nothing
    assert abs(_accuracy(two) - _accuracy(one)) < 0.05  # same global batch: within noise
    assert _accuracy(two) > 0.85
    assert _kinds(tmp_path / "two") == _kinds(tmp_path / "one")  # one set, nothing per rank
    events = [p for p in (tmp_path / "two").iterdir() if p.name.startswith("events.out.")]
    assert len(events) == 1  # rank 0's writer alone


@requires_mpi
def test_resume_on_two_ranks_equals_the_uninterrupted_run(tmp_path):
    args = ["--logger", "none", "--nproc", "2"]
    _, whole = _train("ae", tmp_path / "whole", "--epochs", "2", *args)
    _train("ae", tmp_path / "part", "--epochs", "1", *args)
    proc, resumed = _train("ae", tmp_path / "part", "--epochs", "2", "--resume", *args)
    assert proc.stderr.count("resuming") == 1  # said once, by rank 0
    for key, values in whole["history"].items():
        if key != "seconds":
            assert resumed["history"][key] == values, key  # exactly (cpu)
    assert resumed["test_loss"] == whole["test_loss"]


@requires_mpi
@pytest.mark.parametrize(
    "verb",
    [
        ["gan", "--gan-loss", "wgan-gp"],  # double backward through the critic on ranks
        ["cgan"],
        ["pix2pix"],
        ["cyclegan"],
        ["stylegan"],  # R1
        ["vae"],
        ["conv-vae"],
    ],
    ids=lambda v: v[0],
)
def test_every_train_verb_runs_on_two_ranks(tmp_path, verb):
    """One epoch of each generative verb on 2 ranks: exit 0, rank 0's one summary line, its
    outputs, no traceback and no warning twice."""
    proc, metrics = _train(verb[0], tmp_path / "run", *verb[1:], "--epochs", "1", "--nproc", "2")
    assert metrics["epochs"] == 1
    assert len(proc.stdout.strip().splitlines()) == 1, proc.stdout  # rank 0's summary alone
    assert (tmp_path / "run" / "checkpoint.npz").exists()
    assert "Traceback" not in proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "Warning:" in line]
    assert len(warned) == len(set(warned)), proc.stderr


@requires_mpi
def test_a_dcgan_with_sync_batch_norm_under_wgan_gp_on_two_ranks_equals_one_process(tmp_path):
    """`train gan --dataset mnist --gan-loss wgan-gp --nproc 2`: the one CLI run where
    SyncBatchNorm (the DCGAN generator's two BatchNorms, converted on ranks) and a gradient
    penalty (on the critic, a double backward) meet. 3 steps on 24 tiny images, global batch 8;
    with the training draws aligned between the runs (tests/cli/global_draws), rank 0's
    checkpoint equals one process's: networks, running statistics, Adam's moments. The
    critic has no BatchNorm (by design: WGAN-GP's per-sample gradients), so no CLI penalty
    differentiates through SyncBatchNorm itself: tests/layers/test_parallel.py does that."""
    from helpers import make_mnist_dir

    import engine

    (tmp_path / "data").mkdir()
    make_mnist_dir(tmp_path / "data", n_train=24, n_test=4)
    args = ["--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--gan-loss", "wgan-gp"]
    args += ["--batch-size", "8", "--epochs", "1", "--hidden-dim", "4", "--latent-dim", "8"]
    args += ["--logger", "none"]
    draws = str(ROOT / "tests" / "cli" / "global_draws")
    runs = {}
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        _train("gan", tmp_path / name, *args, *extra, pythonpath=draws)
        runs[name] = engine.load(tmp_path / name / "checkpoint.npz")
    one, two = (_leaves(runs[k]) for k in ("one", "two"))
    assert one.keys() == two.keys()
    net_keys = [k for k in one if k.startswith("networks/")]
    assert any("running_var" in k for k in net_keys) and any("optimizers/" in k for k in one)
    assert runs["two"]["global_step"] == runs["one"]["global_step"] == 3
    # The biases just before a BatchNorm (generator 0 and 4) have a zero gradient up to
    # rounding (~1e-10: the normalisation removes any shift), which Adam scales up to steps of
    # up to lr (2e-4) whose sign is the rounding's; they, their moments and the running means
    # they shift agree to 3 steps x lr. Every other value agrees to 1e-4 of its largest.
    noise = (
        "generator/0.bias",
        "generator/4.bias",
        "running_mean",
        "generator/state/1/",
        "generator/state/5/",
    )
    for key in one:
        if one[key].dtype.kind != "f":
            np.testing.assert_array_equal(two[key], one[key], err_msg=key)  # step counters
            continue
        diff = float(np.abs(two[key] - one[key]).max(initial=0.0))
        bound = 3 * 2e-4 if any(n in key for n in noise) else 1e-4 * np.abs(one[key]).max()
        assert diff <= bound + 1e-12, (key, diff, bound)


def _leaves(tree, prefix: str = "") -> dict:
    """The arrays of a checkpoint's nested state, by their path ("networks/generator/...")."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}{k}/"))
        return out
    if isinstance(tree, (list, tuple)):
        return _leaves(dict(enumerate(tree)), prefix)
    if hasattr(tree, "numpy"):
        return {prefix[:-1]: tree.numpy()}
    if isinstance(tree, np.ndarray):
        return {prefix[:-1]: tree}
    return {}


@requires_mpi
def test_the_cli_under_mpiexec_directly(tmp_path):
    """`mpiexec -n 2 python -m mpi4py -m tensortape train ...` (what a hostfile run does) joins
    the ranks without --nproc: one summary, the outputs of the --nproc run."""
    from helpers import MPIEXEC

    out = tmp_path / "direct"
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "tensortape"]
    cmd += ["train", "ae", "--epochs", "1", "--out", str(out), "--device", "cpu"]
    cmd += ["--no-progress", "--logger", "none"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 1, proc.stdout
    _, via_nproc = _train(
        "ae", tmp_path / "nproc", "--epochs", "1", "--logger", "none", "--nproc", "2"
    )
    direct = json.loads((out / "metrics.json").read_text())
    for key, values in via_nproc["history"].items():  # the same job, to the bit (cpu)
        if key != "seconds":
            assert direct["history"][key] == values, key


def test_global_batch_must_divide_by_nproc_before_any_rank_starts(monkeypatch, capsys):
    """Checked in the launching process: one line naming both options, exit status 2, and no
    mpiexec started."""
    import engine.distributed as dist
    from tensortape import cli, launch

    for var in dist._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)

    def started(*_):
        raise AssertionError("mpiexec was started")

    monkeypatch.setattr(launch, "train_on_ranks", started)
    args = ["train", "classifier", "--batch-size", "33", "--nproc", "2", "--epochs", "1"]
    with pytest.raises(SystemExit) as e:
        cli.main(args + ["--out", "unused"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "tensortape train classifier: error: --batch-size 33 is the global batch over all ranks "
        "and must divide by --nproc 2"
    ]


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "error:" in line]


@requires_mpi
def test_a_recipe_batch_that_does_not_divide_is_one_line_from_the_ranks(tmp_path):
    """gan's batch size comes from the dataset's recipe (64), known only inside the ranks: 3
    ranks refuse it with rank 0's one line (not one traceback per rank), exit status 2."""
    cmd = [sys.executable, "-m", "tensortape", "train", "gan", "--nproc", "3", "--epochs", "1"]
    cmd += ["--out", str(tmp_path / "g"), "--device", "cpu", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert _errors(proc) == [
        "tensortape train gan: error: --batch-size 64 is the global batch over all ranks and "
        "must divide by --nproc 3"
    ], proc.stderr
    assert "Traceback" not in proc.stderr


@requires_mpi
def test_an_error_every_rank_hits_is_printed_once(tmp_path):
    """A diverging run (lr 1e9) on 2 ranks: both ranks' losses are nan; rank 0 alone prints the
    error line, and no NumPy overflow warning comes before it (training is silent about inf and
    NaN, as PyTorch is: the loss check names it)."""
    cmd = [sys.executable, "-m", "tensortape", "train", "classifier", "--model", "cnn"]
    cmd += ["--lr", "1e9", "--nproc", "2", "--epochs", "1", "--out", str(tmp_path / "c")]
    cmd += ["--device", "cpu", "--no-progress", "--logger", "none"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    errors = _errors(proc)
    assert len(errors) == 1 and "loss 'train_loss' is nan" in errors[0], proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "Warning:" in line]
    assert not warned, proc.stderr


@requires_mpi
def test_a_failing_rank_ends_the_job_fast_with_one_line(tmp_path):
    """--resume on 2 ranks from a corrupt checkpoint: rank 0 alone reads it and fails while
    rank 1 waits for the broadcast; the job ends (MPI_Abort) with rank 0's one line."""
    _train("ae", tmp_path / "run", "--epochs", "1", "--logger", "none")
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"not a checkpoint")
    cmd = [sys.executable, "-m", "tensortape", "train", "ae", "--out", str(tmp_path / "run")]
    cmd += ["--device", "cpu", "--epochs", "2", "--resume", "--nproc", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors == [
        f"tensortape train ae: error: {tmp_path / 'run' / 'checkpoint.npz'} is not a tensortape "
        "checkpoint (not an .npz archive, or a truncated one)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
