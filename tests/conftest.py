"""Test-suite wiring: the ``device`` fixture, the CuPy stand-in, the ``torch`` fixture.

Every test that takes a ``device`` argument runs once per device, with the device string
(``"cpu"`` or ``"cuda"``) as its value. Devices come from ``TENSORTAPE_TEST_DEVICES`` (default
``cpu,cuda``; also ``cpu`` or ``cuda``). The ``cuda`` cases run on a real GPU when CuPy works
there; otherwise on the CuPy stand-in of ``tests/cuda_sim`` (NumPy arrays, kernels built as host
C++), which is put into ``sys.modules["cupy"]`` before any test module imports the engine. Set
``TENSORTAPE_NO_CUDA_SIM=1`` to skip the cuda cases instead of simulating them.

``TENSORTAPE_REQUIRE_GPU=1`` (set by ``make test-cuda`` and ``make gpu-check``) forbids both: when
CuPy is missing, too old or finds no working GPU, the run stops at once with a usage error naming
why, so a GPU check can never pass on the stand-in without touching a GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # `import cuda_sim` from any test, whatever the rootdir
    sys.path.insert(0, str(TESTS_DIR))

import cuda_sim  # noqa: E402

# The tests multiply tiny matrices: one BLAS thread is faster for them, and it keeps timings sane
# when the machine's cores are shared. threadpoolctl only limits libraries already loaded, so
# NumPy (and its BLAS) is imported first.
import numpy  # noqa: E402, F401

try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    pass

KNOWN_DEVICES = ("cpu", "cuda")


def _requested_devices() -> tuple[str, ...]:
    raw = os.environ.get("TENSORTAPE_TEST_DEVICES", "cpu,cuda")
    devices = tuple(d.strip() for d in raw.split(",") if d.strip())
    unknown = [d for d in devices if d not in KNOWN_DEVICES]
    if unknown or not devices:
        raise pytest.UsageError(
            f"TENSORTAPE_TEST_DEVICES={raw!r}: expected a comma-separated subset of {KNOWN_DEVICES}"
        )
    return devices


def _real_gpu() -> str | None:
    """None when real CuPy computes on a GPU here, else why not."""
    from engine.device import unavailable_reason

    why = unavailable_reason()  # CuPy missing or older than the extras' floor, no driver, no GPU
    if why:
        return why
    try:
        import cupy

        if float(cupy.arange(3, dtype=cupy.float32).sum()) != 3.0:
            return "CuPy computed a wrong sum"
        return None
    except Exception as exc:  # libnvrtc.so / libcublas.so not found, a kernel failing, ...
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


REQUIRE_GPU = os.environ.get("TENSORTAPE_REQUIRE_GPU") == "1"


def _choose_cuda_backend(devices: tuple[str, ...]) -> tuple[str, str]:
    """("gpu" | "sim" | "skip" | "refused", explanation)."""
    if "cuda" not in devices:
        if REQUIRE_GPU:
            return "refused", "TENSORTAPE_TEST_DEVICES has no cuda"
        return "skip", "cuda not in TENSORTAPE_TEST_DEVICES"
    if getattr(sys.modules.get("cupy"), "IS_CUDA_SIM", False):
        if REQUIRE_GPU:
            return "refused", "the CuPy stand-in is already installed as cupy"
        return "sim", "CuPy stand-in (already installed)"
    why = _real_gpu()
    if why is None:
        return "gpu", "real CuPy on a GPU"
    if REQUIRE_GPU:
        return "refused", why
    if os.environ.get("TENSORTAPE_NO_CUDA_SIM") == "1":
        return "skip", f"no usable GPU ({why}) and TENSORTAPE_NO_CUDA_SIM=1"
    cuda_sim.install()
    engine = sys.modules.get("engine")
    if engine is not None and hasattr(engine, "cuda"):
        engine.cuda.reset()  # forget any availability answer given by the real CuPy
    return "sim", f"CuPy stand-in on NumPy, kernels built as host C++ (no GPU: {why})"


DEVICES = _requested_devices()
CUDA_BACKEND, CUDA_REASON = _choose_cuda_backend(DEVICES)


def pytest_configure(config: pytest.Config) -> None:
    if CUDA_BACKEND == "refused":
        raise pytest.UsageError(
            f"TENSORTAPE_REQUIRE_GPU=1 (make test-cuda / make gpu-check) but the cuda tests "
            f"cannot run on a real GPU here: {CUDA_REASON}. Not falling back to the CuPy "
            "stand-in."
        )
    config.addinivalue_line("markers", "cuda: the cuda case of a device-parametrised test")


def pytest_report_header(config: pytest.Config) -> str:
    cuda = f"cuda -> {CUDA_REASON}" if "cuda" in DEVICES else "cuda not requested"
    return f"tensortape devices: {', '.join(DEVICES)}; {cuda}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise every test that takes ``device`` over the requested devices."""
    if "device" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if "device" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return  # the test chose its own devices
    params = []
    for dev in DEVICES:
        marks = []
        if dev == "cuda":
            marks.append(pytest.mark.cuda)
            if CUDA_BACKEND == "skip":
                marks.append(pytest.mark.skip(reason=CUDA_REASON))
        params.append(pytest.param(dev, id=dev, marks=marks))
    metafunc.parametrize("device", params)


@pytest.fixture
def torch():
    """PyTorch, the reference implementation; skips the test when it is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def two_blas_threads():
    """Two BLAS threads for the test (the suite runs at one): kernels/parallel.py then cuts
    the CPU kernels' and elementwise ops' work into two parts."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 (a dependency of the package)

    with threadpool_limits(2, user_api="blas"):
        yield
