"""`make test-cuda` / `make gpu-check` fail loudly where CuPy cannot compute on a GPU.

Each case runs the real entry point in a subprocess with a `cupy` on PYTHONPATH that is missing,
too old, or imports but finds no driver (as real CuPy does on a machine without a GPU); none may
fall back to the CuPy stand-in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_CUPY = """
__version__ = "{version}"


class _Runtime:
    class CUDARuntimeError(RuntimeError):
        pass

    def getDeviceCount(self):
        raise self.CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                                    "insufficient for CUDA runtime version")


class cuda:
    runtime = _Runtime()
"""


def _env(tmp_path: Path, version: str | None) -> dict:
    """The environment of a subprocess whose `import cupy` gives a fake, or fails."""
    paths = [str(ROOT)]
    if version is not None:
        (tmp_path / "fake" / "cupy").mkdir(parents=True)
        (tmp_path / "fake" / "cupy" / "__init__.py").write_text(FAKE_CUPY.format(version=version))
        paths.insert(0, str(tmp_path / "fake"))
    else:
        (tmp_path / "fake").mkdir()
        (tmp_path / "fake" / "cupy.py").write_text("raise ImportError('No module named cupy')\n")
        paths.insert(0, str(tmp_path / "fake"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORTAPE_")}
    return dict(env, PYTHONPATH=os.pathsep.join(paths))


CASES = [
    (None, "CuPy is not installed"),
    ("13.6.0", "CuPy 13.6.0 is older than 14.0"),
    ("14.2.0", "no usable GPU.*cudaErrorInsufficientDriver"),
]


@pytest.mark.parametrize("version, why", CASES, ids=["missing", "too-old", "no-driver"])
def test_the_cuda_suite_refuses_to_fall_back_to_the_stand_in(tmp_path, version, why):
    env = dict(_env(tmp_path, version), TENSORTAPE_REQUIRE_GPU="1", TENSORTAPE_TEST_DEVICES="cuda")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q"]
    done = subprocess.run(
        [*cmd, str(ROOT / "tests" / "cuda_sim" / "test_sim.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 4, out  # pytest's usage error: nothing collected, nothing passed
    assert "TENSORTAPE_REQUIRE_GPU=1" in out and "Not falling back to the CuPy stand-in" in out
    assert re.search(why, out), out


def test_without_the_flag_the_suite_falls_back_to_the_stand_in(tmp_path):
    env = dict(_env(tmp_path, "14.2.0"), TENSORTAPE_TEST_DEVICES="cuda")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q",
         str(ROOT / "tests" / "cuda_sim" / "test_sim.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_test_cuda_sets_the_flag():
    # `make -n` prints the recipe without running it (or the venv rule).
    done = subprocess.run(
        ["make", "-n", "-o", "/nonexistent/.installed", "test-cuda", "VENV=/nonexistent"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode == 127 or "not found" in done.stderr:
        pytest.skip("make is not installed")
    assert "TENSORTAPE_REQUIRE_GPU=1" in done.stdout and "pytest tests" in done.stdout


@pytest.mark.parametrize("version, why", CASES, ids=["missing", "too-old", "no-driver"])
def test_gpu_check_fails_loudly_and_says_why_in_its_report(tmp_path, version, why):
    out_dir = tmp_path / "gpu-check"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out_dir)],
        cwd=ROOT, env=_env(tmp_path, version), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gpu-check: FAILED, no usable GPU" in done.stderr
    report = json.loads((out_dir / "report.json").read_text())
    assert "suite" not in report and re.search(why, report["error"])


def test_gpu_check_reads_the_card_it_runs_on():
    import cuda_sim

    if not cuda_sim.is_installed():
        pytest.skip("reads the stand-in's card (on a real GPU gpu_check itself is the test)")
    from benchmarks import gpu_check

    info = gpu_check.device_info()
    assert info["card"].startswith("CuPy stand-in") and info["compute_capability"] == "8.0"
    assert info["cupy"].endswith("+cuda_sim") and info["driver"] == info["cuda_runtime"] == "13.0"


def test_gpu_check_runs_the_suite_and_both_benchmark_tables(tmp_path, monkeypatch):
    """On a card: the suite, the float32 table and the mixed-precision one (issue 14), each in
    the report; a failing mixed-precision table fails the check."""
    from benchmarks import gpu_check

    calls = []

    def run(cmd, env):
        calls.append(cmd)
        return (1 if "--precision" in cmd else 0), ["table"], 1.0

    monkeypatch.setattr(gpu_check, "device_info", lambda: {"card": "test"})
    monkeypatch.setattr(gpu_check, "_run", run)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    assert calls[0][-3:] == ["pytest", "tests", "-q"] and calls[1][-2:] == ["--device", "cuda"]
    assert calls[2][-4:] == ["--precision", "16-mixed,bf16-mixed", "--builds", "1"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["benchmarks"]["passed"] and not report["mixed_precision"]["passed"]
