"""Every ``kernels/cuda/*.cu`` compiles for the GPU: ``nvcc --ptx`` for sm_80 and sm_90.

CuPy compiles these sources with NVRTC at run time, instantiating templates from the name
expressions; here a generated translation unit includes the source and instantiates every name
expression ``kernels.launch`` compiles (``float``/``double``, and for conv, pooling and the
optimizers ``__half``/``__nv_bfloat16`` with ``float`` arithmetic, against CUDA's own
``cuda_fp16.h``/``cuda_bf16.h``), plus any literal ``kernel<...>`` name expression found in the
project's Python, so template bodies are type-checked without a GPU. ``nvcc`` implicitly includes
host headers that NVRTC lacks (``INFINITY``, ``M_PI``, ``std::``), so the kernel conventions are
checked as well. Skips when ``nvcc`` is absent.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cuda_sim import hostbuild

from kernels import launch

ROOT = Path(__file__).resolve().parents[2]
CU_FILES = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
NVCC = shutil.which("nvcc")
FLOAT_TYPES = ("float", "double")

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


def _literal_name_expressions(kernel_names: set[str]) -> set[str]:
    """``"name<...>"`` string literals in the project's Python that name one of these kernels."""
    found = set()
    for folder in ("kernels", "engine", "optimizers", "layers"):
        for py in (ROOT / folder).rglob("*.py"):
            for expr in re.findall(r"[\"']([A-Za-z_]\w*<[^<>\"'{}]+>)[\"']", py.read_text()):
                if expr.split("<")[0] in kernel_names:
                    found.add(expr)
    return found


def instantiations(source: str, name: str | None = None) -> list[str]:
    """The name expressions to instantiate: those ``kernels.launch`` compiles for the source
    file ``name`` of kernels/cuda; for any other source, every template kernel for float and
    double."""
    kernels = hostbuild.find_kernels(source)
    exprs = set(launch.name_expressions(name)) if name in launch.KERNELS else set()
    for kdef in kernels.values():
        if not kdef.tparams:
            continue
        if kdef.tparams not in (("T",), ("T", "A")) or (
            len(kdef.tparams) == 2 and name not in launch.MIXED
        ):
            raise hostbuild.KernelConventionError(
                f"kernel {kdef.name!r} has template parameters {kdef.tparams}; the convention is "
                "`template <typename T>`, or `<typename T, typename A>` in kernels.launch.MIXED"
            )
        if name not in launch.KERNELS:
            exprs.update(f"{kdef.name}<{t}>" for t in FLOAT_TYPES)
    exprs |= _literal_name_expressions({k.name for k in kernels.values() if k.tparams})
    return sorted(exprs)


def wrapper_source(cu_path: Path, source: str, exprs: list[str]) -> str:
    """The text nvcc compiles: ``source`` as NVRTC gets it, then its instantiations."""
    lines = [f'#line 1 "{cu_path}"', source, '#line 1 "<instantiations>"']
    lines += [f"template __global__ decltype({e}) {e};" for e in exprs]
    return "\n".join(lines) + "\n"


def _nvcc_version() -> str:
    return subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout


def compile_ptx(cu_path: Path, tmp_path: Path, archs: tuple[str, ...] = ARCHS) -> dict[str, str]:
    """PTX of ``cu_path`` per arch (one nvcc per arch, run concurrently; cached by content)."""
    source = hostbuild.read_source(cu_path)  # tt_common.cuh expanded, as NVRTC gets it
    hostbuild.check_conventions(source, str(cu_path))
    exprs = instantiations(source, cu_path.name)
    for expr in exprs:  # the host build must be able to parse every signature too
        hostbuild.signature(source, expr)
    wrapper = tmp_path / f"{cu_path.stem}_instantiate.cu"
    wrapper.write_text(wrapper_source(cu_path, source, exprs))
    key = hashlib.sha256("\0".join([_nvcc_version(), source, *exprs]).encode()).hexdigest()[:24]
    cache = {arch: hostbuild.cache_dir().parent / "ptx" / f"{key}.{arch}.ptx" for arch in archs}
    procs = {
        arch: subprocess.Popen(
            [
                NVCC,
                "--ptx",
                f"-arch={arch}",
                "--std=c++17",
                str(wrapper),
                "-o",
                str(tmp_path / f"{cu_path.stem}.{arch}.ptx"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for arch in archs
        if not cache[arch].exists()
    }
    failures = []
    for arch, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failures.append(f"--- nvcc -arch={arch} {cu_path.name}:\n{out.strip()}")
            continue
        cache[arch].parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{cu_path.stem}.{arch}.ptx").replace(cache[arch])
    assert not failures, "\n".join(failures)
    ptx = {arch: cache[arch].read_text() for arch in archs}
    for arch, text in ptx.items():
        assert text.count(".entry") >= len(exprs), f"{cu_path.name}: missing kernels in {arch} PTX"
    return ptx


@needs_nvcc
@pytest.mark.parametrize("cu_path", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cuda_source_compiles_to_ptx(cu_path: Path, tmp_path: Path) -> None:
    compile_ptx(cu_path, tmp_path)


def test_there_are_cuda_sources() -> None:
    # Without them the compile test above would be parametrised over nothing and pass silently.
    assert CU_FILES, f"no *.cu under {ROOT / 'kernels' / 'cuda'}"
    assert all(p.stat().st_size > 0 for p in CU_FILES)


# ---------------------------------------------------------------- the harness itself

GOOD = """
template <typename T>
__global__ void scale(T* __restrict__ y, const T* __restrict__ x, T a, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = a * x[i];
    }
}
extern "C" __global__ void count(int* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        out[i] = min(i, n - 1);
}
"""


@needs_nvcc
def test_harness_compiles_a_template_kernel(tmp_path: Path) -> None:
    cu = tmp_path / "good.cu"
    cu.write_text(GOOD)
    assert instantiations(GOOD) == ["scale<double>", "scale<float>"]
    ptx = compile_ptx(cu, tmp_path, archs=("sm_80",))["sm_80"]
    assert "_Z5scaleIfEvPT_PKS0_S0_x" in ptx and ".entry count(" in ptx


@needs_nvcc
def test_harness_reports_a_template_body_error(tmp_path: Path) -> None:
    # The body only fails once instantiated: nvcc alone (no instantiation) would accept it.
    bad = GOOD.replace("y[i] = a * x[i];", "y[i] = a * x[i].missing;")
    cu = tmp_path / "bad.cu"
    cu.write_text(bad)
    with pytest.raises(AssertionError, match="missing"):
        compile_ptx(cu, tmp_path, archs=("sm_80",))


@pytest.mark.parametrize(
    "snippet",
    ["y[i] = -INFINITY;", "y[i] = std::max(a, x[i]);", "atomicAdd(y, x[i]);", "__syncthreads();"],
)
def test_harness_rejects_what_nvrtc_or_the_host_build_cannot_take(snippet: str) -> None:
    with pytest.raises(hostbuild.KernelConventionError):
        hostbuild.check_conventions(GOOD.replace("y[i] = a * x[i];", snippet), "snippet.cu")


# ---------------------------------------------------------------- integer division in the kernels

# div/rem instructions in the PTX of each kernel with window or slice loops (nvcc 13.0, sm_80 and
# sm_90, every instantiation). A div.s32 is a ~20-instruction sequence on the GPU, a div.s64 a
# call (nvcc pairs each with a div.u32 fast path), so the kernels split their indices once per
# thread and step by additions (issue 12). conv.cu before: im2col 29 (5 divisions per column
# entry, the grid-stride loop unrolled 4x), col2im 10 (3 per thread plus one per window row and
# one per window element, inside the loops); now im2col 5 (3 per thread, for kh * kw entries),
# col2im 14 (7 per thread, 2 per launch; none in the window loops). pool.cu's backward kernels
# step through their windows as col2im does. norm.cu's per-element kernels combine S slice
# partials per element: batch_norm_forward had 76 (two 64-bit divisions per slice, twice, the
# slice loops unrolled) before next_slice_size walked the slice sizes by additions; now 6.
DIV_REM_LIMITS = {
    "conv.cu": {"im2col": 5, "col2im": 14},
    "pool.cu": {"max_pool2d_backward": 10, "avg_pool2d_backward": 6},
    "norm.cu": {"batch_norm_forward": 6, "batch_norm_backward": 4},
}


def div_rem_counts(ptx: str) -> dict[str, int]:
    """{entry name: integer div/rem instructions in its body} of a PTX module."""
    out = {}
    for m in re.finditer(r"\.entry\s+(\S+)\((.*?)\n\}", ptx, re.S):
        found = re.findall(r"^\s*(?:@!?%p\d+\s+)?(?:div|rem)\.[su]\d+", m.group(0), re.M)
        out[m.group(1)] = len(found)  # integer division only (not div.rn.f32)
    return out


def _kernel_name(entry: str) -> str:
    """The kernel name of a mangled entry (``_Z6im2colIffE...`` -> ``im2col``)."""
    m = re.match(r"_Z(\d+)", entry)
    return entry[m.end() : m.end() + int(m.group(1))]


@needs_nvcc
@pytest.mark.parametrize("source", sorted(DIV_REM_LIMITS))
def test_window_and_slice_kernels_divide_once_per_thread(source: str, tmp_path: Path) -> None:
    ptx = compile_ptx(ROOT / "kernels" / "cuda" / source, tmp_path)
    limits = DIV_REM_LIMITS[source]
    for arch, text in ptx.items():
        counts = div_rem_counts(text)
        assert len(counts) == len(launch.name_expressions(source)), arch
        bounded = [e for e in counts if _kernel_name(e) in limits]
        assert len(bounded) == len(limits) * len(launch.dtypes(source)), arch
        for entry in bounded:
            n = counts[entry]
            assert n <= limits[_kernel_name(entry)], f"{arch} {entry}: {n} div/rem instructions"
