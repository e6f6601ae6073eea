"""The host build of CUDA sources: launches cover the grid, arguments are checked like the GPU
reads them, out-of-bounds writes are caught, convention breaks are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cuda_sim import cupy as cp
from cuda_sim import hostbuild
from cuda_sim.hostbuild import KernelArgumentError, KernelConventionError, KernelLaunchError

SOURCE = r"""
// A saxpy-like template kernel: 1-D grid-stride loop, 64-bit index.
template <typename T>
__global__ void axpy(T* __restrict__ y, const T* __restrict__ x, T a, int n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = a * x[i] + y[i];
    }
}

__device__ __forceinline__ double twice(double v) { return 2.0 * v; }

extern "C" __global__ void scaled_index(long long* out, long long n, double scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        out[i] = (long long)(twice(scale) * i) + max(0, min(3, 7));
    }
}

// Records which (block, thread) ran: one slot per thread of a 3-D launch.
extern "C" __global__ void who(int* out) {
    unsigned int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned int per_block = blockDim.x * blockDim.y * blockDim.z;
    unsigned int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    out[block * per_block + thread] += 1;
}

// Planted off-by-one: `<=` writes y[n], one past the end.
template <typename T>
__global__ void copy_off_by_one(T* y, const T* x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i <= n; i += blockDim.x * gridDim.x) {
        y[i] = x[i];
    }
}
"""
NAMES = ["axpy<float>", "axpy<double>", "copy_off_by_one<float>"]


@pytest.fixture(scope="module")
def module(tmp_path_factory) -> hostbuild.HostModule:
    cu = tmp_path_factory.mktemp("cu") / "tiny.cu"
    cu.write_text(SOURCE)
    return hostbuild.build(cu, NAMES)


def _axpy_args(n: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    a = dtype(1.5)
    return x, y, a, a * x + y


@pytest.mark.parametrize("ctype,dtype", [("float", np.float32), ("double", np.float64)])
def test_axpy_matches_numpy(module, ctype, dtype) -> None:
    x, y, a, expected = _axpy_args(1000, dtype)
    d_y = cp.asarray(y)
    module.get_function(f"axpy<{ctype}>")((4,), (256,), (d_y, cp.asarray(x), a, np.int32(1000)))
    np.testing.assert_allclose(d_y.get(), expected, rtol=1e-6)
    assert d_y.dtype == dtype


@pytest.mark.parametrize("grid", [(1,), (3,), (0,)])
def test_grid_smaller_than_the_data_is_covered_by_the_stride(module, grid) -> None:
    # (0,) still launches one block, as in CuPy: the kernel must loop over everything itself.
    x, y, a, expected = _axpy_args(1001, np.float32, seed=1)
    d_y = cp.asarray(y)
    module.get_function("axpy<float>")(grid, (32,), (d_y, cp.asarray(x), a, np.int32(1001)))
    np.testing.assert_allclose(d_y.get(), expected, rtol=1e-6)


def test_extern_c_kernel_takes_long_long_and_double(module) -> None:
    out = cp.zeros(10, dtype=cp.int64)
    module.get_function("scaled_index")((2,), (3,), (out, 10, 0.5))
    np.testing.assert_array_equal(out.get(), np.arange(10) + 3)
    module.get_function("scaled_index")((2,), (3,), (out, np.int64(10), np.float64(1.0)))
    np.testing.assert_array_equal(out.get(), 2 * np.arange(10) + 3)


def test_every_block_and_thread_of_a_3d_launch_runs_once(module) -> None:
    grid, block = (3, 2, 2), (4, 2, 3)
    out = cp.zeros(int(np.prod(grid) * np.prod(block)), dtype=cp.int32)
    module.get_function("who")(grid, block, (out,))
    np.testing.assert_array_equal(out.get(), 1)


# ---------------------------------------------------------------- argument checking


@pytest.fixture
def axpy(module):
    x, y, a, _ = _axpy_args(64, np.float32)
    return module.get_function("axpy<float>"), cp.asarray(y), cp.asarray(x), a


@pytest.mark.parametrize(
    "position,value,message",
    [
        (3, 64, r"parameter 3 'n' \(int n\): got Python int 64.*int64.*numpy\.int32"),
        (3, np.int64(64), r"parameter 3 'n'.*numpy\.int64.*numpy\.int32"),
        (2, 1.5, r"parameter 2 'a' \(float a\): got Python float.*float64.*numpy\.float32"),
        (2, np.float64(1.5), r"parameter 2 'a'.*numpy\.float32"),
        (2, None, r"parameter 2 'a'.*passed by value"),
    ],
)
def test_scalar_of_the_wrong_width_is_an_error(axpy, position, value, message) -> None:
    f, y, x, a = axpy
    args = [y, x, a, np.int32(64)]
    args[position] = value
    with pytest.raises(KernelArgumentError, match=message) as info:
        f((1,), (32,), args)
    assert "axpy<float>" in str(info.value)


def test_host_array_for_a_pointer_is_an_error(axpy) -> None:
    f, y, x, a = axpy
    with pytest.raises(KernelArgumentError, match=r"parameter 1 'x'.*host numpy\.ndarray"):
        f((1,), (32,), (y, x.get(), a, np.int32(64)))


def test_wrong_dtype_for_a_pointer_is_an_error(axpy) -> None:
    f, y, x, a = axpy
    with pytest.raises(KernelArgumentError, match=r"parameter 0 'y'.*float64.*reads float32"):
        f((1,), (32,), (y.astype(cp.float64), x, a, np.int32(64)))


def test_non_contiguous_array_is_an_error(axpy) -> None:
    f, y, x, a = axpy
    with pytest.raises(KernelArgumentError, match=r"parameter 1 'x'.*strides.*ascontiguousarray"):
        f((1,), (32,), (y[:32], x[::2], a, np.int32(32)))
    f((1,), (32,), (y[:32], cp.ascontiguousarray(x[::2]), a, np.int32(32)))  # the fix works


def test_wrong_argument_count_is_an_error(axpy) -> None:
    f, y, x, a = axpy
    with pytest.raises(KernelArgumentError, match=r"takes 4 argument\(s\), got 3"):
        f((1,), (32,), (y, x, a))


def test_launch_configuration_is_checked_like_cupy(axpy) -> None:
    f, y, x, a = axpy
    args = (y, x, a, np.int32(64))
    with pytest.raises(TypeError, match="grid .* must be a tuple"):
        f(1, (32,), args)
    with pytest.raises(KernelLaunchError, match="more than 1024 threads"):
        f((1,), (64, 32), args)
    with pytest.raises(KernelLaunchError, match="shared"):
        f((1,), (32,), args, shared_mem=128)


# ---------------------------------------------------------------- memory safety


def test_planted_off_by_one_write_is_caught(module) -> None:
    x, y = cp.arange(10, dtype=cp.float32), cp.zeros(10, dtype=cp.float32)
    f = module.get_function("copy_off_by_one<float>")
    with pytest.raises(KernelLaunchError, match=r"outside parameter 0 'y'.*1 past its end"):
        f((1,), (32,), (y, x, np.int32(10)))
    f((1,), (32,), (y, x, np.int32(9)))  # n - 1 is in bounds
    np.testing.assert_array_equal(y.get(), np.arange(10))


def test_reading_past_the_end_of_a_float_array_reads_nan(module) -> None:
    x, y = cp.arange(4, dtype=cp.float32), cp.zeros(8, dtype=cp.float32)
    module.get_function("copy_off_by_one<float>")((1,), (32,), (y, x, np.int32(4)))
    got = y.get()
    np.testing.assert_array_equal(got[:4], np.arange(4))
    assert np.isnan(got[4])  # x[4] is outside x


# ---------------------------------------------------------------- conventions and building


def test_template_kernel_needs_its_template_arguments() -> None:
    with pytest.raises(KernelConventionError, match=r"e\.g\. 'axpy<float>'"):
        hostbuild.signature(SOURCE, "axpy")


def test_unlisted_name_expression_is_not_in_the_module(module) -> None:
    with pytest.raises(KeyError, match="axpy<int>"):
        module.get_function("axpy<int>")


def test_signature_parsing_normalises_types() -> None:
    src = (
        "template <class T> __global__ void k(const T *__restrict__ a, unsigned n, "
        "long long int m, const float s, T* __restrict__ out) {}"
    )
    sig = hostbuild.signature(src, "k<double>")
    assert [str(p) for p in sig.params] == [
        "const double* a",
        "unsigned int n",
        "long long m",
        "const float s",
        "double* out",
    ]


@pytest.mark.parametrize(
    "body,what",
    [
        ("__shared__ float s[32];", "shared memory"),
        ("__syncthreads();", "barriers"),
        ("atomicAdd(out, 1.0f);", "atomics"),
        ("out[0] = INFINITY;", "host header"),
    ],
)
def test_convention_breaks_are_refused_before_compiling(body, what) -> None:
    src = f'extern "C" __global__ void k(float* out) {{ {body} }}'
    with pytest.raises(KernelConventionError, match=what):
        hostbuild.build(None, code=src)


def test_compiler_errors_are_reported_with_the_source_label() -> None:
    src = 'extern "C" __global__ void k(float* out) { out[0] = undefined_name; }'
    with pytest.raises(hostbuild.HostBuildError, match="broken.cu.*undefined_name"):
        hostbuild.build(None, code=src, label="broken.cu")


def test_builds_are_cached_by_content(tmp_path: Path) -> None:
    src = 'extern "C" __global__ void k(float* out) { out[0] = 1.0f; }'
    first = hostbuild.build(None, code=src)
    again = hostbuild.build(None, code=src)
    assert first.so_path == again.so_path and first.so_path.exists()
    assert hostbuild.build(None, code=src + "\n").so_path != first.so_path


def test_the_common_header_is_expanded_by_the_loader_and_a_raw_include_is_refused():
    # NVRTC gets no include path from us: the sources' `#include "tt_common.cuh"` must be
    # expanded by kernels.launch.source_code, and a source handed over unexpanded is refused.
    from kernels import launch

    raw = (launch.CUDA_DIR / "pool.cu").read_text()
    with pytest.raises(hostbuild.KernelConventionError, match="#include"):
        hostbuild.build(None, code=raw, label="pool.cu")
    code = hostbuild.strip_comments(launch.source_code("pool.cu"))
    assert code.count("struct tt_divmod") == 1 and '#include "' not in code
    # The line after the include keeps its number in the source (the #line marker back).
    (i,) = [i for i, line in enumerate(raw.split("\n")) if line.startswith('#include "')]
    after = i + 2  # 1-based number of the line after the include
    assert f'#line {after} "pool.cu"' in launch.source_code("pool.cu")
