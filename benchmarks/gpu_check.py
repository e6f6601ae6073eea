"""`make gpu-check`: the suite on a real GPU plus the cuda benchmarks, reported in one file.

    python -m benchmarks.gpu_check [--out runs/gpu-check] [--skip-bench]

Stops at once, exit status 1, when CuPy is missing, older than 14, or finds no working GPU (the
CuPy stand-in of the tests is never used here). Otherwise runs the whole suite on the cuda device
with ``TENSORTAPE_REQUIRE_GPU=1`` (so a broken CuPy can't silently fall back to the stand-in),
then ``benchmarks.run --device cuda`` (float32, then 16-mixed and bf16-mixed), and prints and
writes ``<out>/report.json``: card name, compute capability, driver and CUDA runtime versions,
CuPy version, the suite's result and the cuda benchmark tables. The exit status is non-zero
when any part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cuda_version(v: int) -> str:
    """CUDA's integer versions (12040) as text ("12.4")."""
    return f"{v // 1000}.{v % 1000 // 10}"


def device_info() -> dict:
    """The card and software this check runs on; raises RuntimeError naming why CUDA can't run."""
    from engine.device import unavailable_reason

    why = unavailable_reason()
    if why:
        raise RuntimeError(why)
    import cupy

    try:
        if float(cupy.arange(3, dtype=cupy.float32).sum()) != 3.0:  # loads NVRTC and the driver
            raise RuntimeError("CuPy computed a wrong sum")
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        name = props["name"]
        return {
            "card": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "device_count": rt.getDeviceCount(),
            "driver": _cuda_version(rt.driverGetVersion()),
            "cuda_runtime": _cuda_version(rt.runtimeGetVersion()),
            "cupy": cupy.__version__,
        }
    except RuntimeError:
        raise
    except Exception as exc:  # libnvrtc.so.12 not found, cudaErrorNoKernelImageForDevice, ...
        raise RuntimeError(f"CuPy cannot compute here: {type(exc).__name__}: {exc}") from exc


def _run(cmd: list[str], env: dict) -> tuple[int, list[str], float]:
    """Run ``cmd`` from the repository root, echoing its output; (status, lines, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines, time.perf_counter() - start


def _write(path: Path, report: dict) -> None:
    from dataio.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gpu-check", help="folder of report.json")
    p.add_argument("--skip-bench", action="store_true", help="run the suite only")
    args = p.parse_args(argv)
    path = Path(args.out) / "report.json"
    report: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        report["device"] = device_info()
    except RuntimeError as exc:
        report["error"] = str(exc)
        _write(path, report)
        print(f"gpu-check: FAILED, no usable GPU: {exc} (report: {path})", file=sys.stderr)
        return 1
    print("gpu-check:", json.dumps(report["device"]), flush=True)
    env = dict(os.environ, TENSORTAPE_TEST_DEVICES="cuda", TENSORTAPE_REQUIRE_GPU="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    status, lines, seconds = _run([sys.executable, "-m", "pytest", "tests", "-q"], env)
    summary = next((ln for ln in reversed(lines) if ln.strip()), "")
    report["suite"] = {"passed": status == 0, "status": status, "summary": summary.strip("= ")}
    report["suite"]["seconds"] = round(seconds, 1)
    if not args.skip_bench:
        bench = [sys.executable, "-m", "benchmarks.run", "--device", "cuda"]
        status_b, lines_b, _ = _run(bench, env)
        report["benchmarks"] = {"passed": status_b == 0, "table": lines_b}
        # Issue 14's table: each workload under autocast against PyTorch's on the same card
        # (one build each, to stay within the 10 minutes).
        amp = bench + ["--precision", "16-mixed,bf16-mixed", "--builds", "1"]
        status_a, lines_a, _ = _run(amp, env)
        report["mixed_precision"] = {"passed": status_a == 0, "table": lines_a}
    _write(path, report)
    parts = [report["suite"]] + [
        report[k] for k in ("benchmarks", "mixed_precision") if k in report
    ]
    ok = all(part["passed"] for part in parts)
    print(f"gpu-check: {'ok' if ok else 'FAILED'}: {report['suite']['summary']} ({path})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
