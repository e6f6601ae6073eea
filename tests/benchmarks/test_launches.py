"""`python -m benchmarks.launches`: launches, syncs, copies and peak bytes per benchmark step,
counted on the CuPy stand-in; the counts may only go down (issue 12's goals in the comments)."""

from __future__ import annotations

import cuda_sim
import pytest

from benchmarks import launches

# Launches per step now; issue 12 counted PyTorch at mlp 28, cnn 32, dcgan 103 and asks for
# at most 1.25x that (mlp 35, cnn 40, dcgan 128), which these limits stay within. Lower them
# when a change cuts launches; never raise one past its goal.
LIMITS = {"mlp": 22, "cnn": 40, "conv2d": 8, "maxpool": 2, "dcgan": 123, "vae": 59}
GOALS = {name: int(1.25 * n) for name, n in launches.TORCH_LAUNCHES.items()}
# 16-mixed (float16 autocast + GradScaler) launches per step now. Before autocast's weight-cast
# cache, the low-dtype conv backward's shared gy transpose and ReLU's uncast mask: mlp 48,
# cnn 77, conv2d 16, dcgan 247, vae 100. The DCGAN's limit is asserted with its memory goal
# (tests/engine/test_autocast_memory.py: one count of that slow step for both).
LIMITS_16 = {"mlp": 46, "cnn": 73, "conv2d": 15, "maxpool": 2, "vae": 98}


def test_the_limits_meet_issue_12s_goal():
    assert all(LIMITS[name] <= goal for name, goal in GOALS.items()), (LIMITS, GOALS)


@pytest.fixture
def sim():
    if not cuda_sim.is_installed():
        pytest.skip("launches are counted on the CuPy stand-in (a GPU run has real CuPy)")


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_step_launches_no_more_than_its_limit_and_never_syncs(sim, name):
    c = launches.count(name)
    assert c.syncs == 0, c.sync_sites
    assert c.launches <= LIMITS[name], dict(c.launch_kinds)
    assert c.peak_bytes > 0


@pytest.mark.parametrize("name", sorted(LIMITS_16))
def test_a_16_mixed_step_launches_no_more_than_its_limit(sim, name):
    c = launches.count(name, precision="16-mixed")
    assert c.launches <= LIMITS_16[name], dict(c.launch_kinds)
    assert c.syncs <= 1, c.sync_sites  # the scaler's one inf/NaN flag per optimizer step


def test_the_table_prints_every_asked_workload(sim, capsys):
    assert launches.main(["maxpool", "--kinds"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["step", "launches", "PyTorch", "ratio", "syncs", "H2D", "peak", "MiB"]
    assert out[1].split()[:2] == ["maxpool", "2"] and "RawKernel 2" in out[2]
    with pytest.raises(SystemExit):
        launches.main(["resnet"])


def test_precision_adds_a_row_and_the_peak_ratio(sim, capsys):
    assert launches.main(["maxpool", "--precision", "16-mixed,32"]) == 0
    out = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert out[0][:2] == ["step", "precision"] and out[0][-1] == "peak/32"
    assert [r[:2] for r in out[1:]] == [["maxpool", "32"], ["maxpool", "16-mixed"]]
    assert out[1][-1] == "1.00" and out[2][-1] == "1.00"  # max-pool stays float32 (no list)
    with pytest.raises(SystemExit):
        launches.main(["maxpool", "--precision", "bf16-mixed"])  # the stand-in has no bfloat16


def test_ops_lists_the_launches_by_the_op_that_asked(sim, capsys):
    assert launches.main(["conv2d", "--ops"]) == 0
    out = capsys.readouterr().out.splitlines()[2:]
    by_op = {line.split(maxsplit=1)[1]: int(line.split()[0]) for line in out}
    assert sum(by_op.values()) == launches.count("conv2d").launches
    assert any(op.startswith("Conv2d.forward") for op in by_op), by_op
    assert any(op.startswith("Conv2d.backward") for op in by_op), by_op
