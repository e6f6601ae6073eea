"""shim.h's software __half and __nv_bfloat16 round as CUDA's __float2half_rn /
__float2bfloat16_rn do (to nearest, ties to even; subnormals; overflow to inf; NaN), checked bit
for bit against NumPy's float16 and ml_dtypes' bfloat16 on every class of float32 input."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from cuda_sim import cupy as sim
from cuda_sim import hostbuild

CODE = """
#include <cuda_fp16.h>
#include <cuda_bf16.h>
template <typename T>
__global__ void round_trip(const float* __restrict__ x, T* __restrict__ y,
                           float* __restrict__ back, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const T h = (T)x[i];
        y[i] = h;
        back[i] = (float)h;
    }
}
"""
BF16 = np.dtype(ml_dtypes.bfloat16)


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 65536, 1e-8, 2**-24,
         2**-25, 2**-25 * 1.0001, 3 * 2**-26, 6.1e-5, 2**-14, 1 + 2**-11, 1 + 3 * 2**-11,
         1 + 2**-8, 1 + 3 * 2**-8, 3.4e38],
        np.float32,
    )  # fmt: skip
    # Random bit patterns, plus values near the 16-bit formats' ties and ranges.
    near = (rng.integers(-(2**14), 2**14, 100_000) * 2.0**-13).astype(np.float32)
    small = (rng.standard_normal(50_000) * 1e-5).astype(np.float32)
    return np.concatenate([bits.view(np.float32), special, -special, near, small])


@pytest.mark.parametrize(
    "ctype, dtype", [("__half", np.dtype(np.float16)), ("__nv_bfloat16", BF16)]
)
def test_software_16_bit_floats_round_like_cuda(ctype, dtype):
    mod = hostbuild.build(None, [f"round_trip<{ctype}>"], code=CODE, label="shim_half.cu")
    x = _inputs()
    y = sim.ndarray._wrap(np.zeros(x.size, dtype))  # (the stand-in's asarray refuses bfloat16)
    back = sim.asarray(np.zeros(x.size, np.float32))
    fn = mod.get_function(f"round_trip<{ctype}>")
    fn((1024,), (256,), (sim.asarray(x), y, back, np.int64(x.size)))
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(dtype)
    got = y.get()
    nan = np.isnan(want.astype(np.float32))
    assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint16), want[~nan].view(np.uint16))
    np.testing.assert_array_equal(back.get()[~nan], want[~nan].astype(np.float32))


FROM_DOUBLE = """
#include <cuda_bf16.h>
template <typename T>
__global__ void from_double(const double* __restrict__ x, T* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = (T)x[i];
    }
}
"""


def _rounded_once(d: np.ndarray, bits: int) -> np.ndarray:
    """``d`` (normal, in range) rounded once to ``bits`` significant bits, ties to even."""
    m, e = np.frexp(d)
    return np.ldexp(np.round(np.ldexp(m, bits)), e - bits)  # np.round: ties to even


@pytest.mark.parametrize(
    "ctype, dtype, bits", [("__half", np.dtype(np.float16), 11), ("__nv_bfloat16", BF16, 8)]
)
def test_conversion_from_double_rounds_once(ctype, dtype, bits):
    """As __double2half / __double2bfloat16 (cvt.rn from f64): no double rounding through float.
    1 + 2^-bits + 2^-40 rounds up, though as a float it would be the tie 1 + 2^-bits, which
    rounds to the even 1. (cuda_bf16.h alone also gives __half, as CUDA's includes cuda_fp16.h.)"""
    rng = np.random.default_rng(1)
    tie = 1 + 2.0**-bits
    d = np.concatenate(
        [[tie + 2.0**-40, tie - 2.0**-40, -(tie + 2.0**-40), tie, 3 * tie],
         rng.choice([-1.0, 1.0], 20_000) * rng.uniform(1, 2, 20_000)
         * 2.0 ** rng.integers(-14, 15, 20_000)]  # normal in both formats
    )  # fmt: skip
    mod = hostbuild.build(None, [f"from_double<{ctype}>"], code=FROM_DOUBLE, label="from_double.cu")
    y = sim.ndarray._wrap(np.zeros(d.size, dtype))
    mod.get_function(f"from_double<{ctype}>")((64,), (256,), (sim.asarray(d), y, np.int64(d.size)))
    got = y.get().astype(np.float64)
    np.testing.assert_array_equal(got, _rounded_once(d, bits))
    assert got[0] == 1 + 2.0 ** (1 - bits) and got[1] == 1.0


@pytest.mark.parametrize(
    "include, ctype",
    [(None, "__half"), (None, "__nv_bfloat16"), ("cuda_fp16.h", "__nv_bfloat16")],
)
def test_a_16_bit_type_needs_its_header_as_under_nvrtc(include, ctype):
    code = FROM_DOUBLE.replace("#include <cuda_bf16.h>", f"#include <{include}>" if include else "")
    with pytest.raises(hostbuild.HostBuildError):
        hostbuild.build(None, [f"from_double<{ctype}>"], code=code, label="no_header.cu")
