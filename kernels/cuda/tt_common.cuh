// Device helpers shared by several kernels/cuda sources. A source takes them with
//     #include "tt_common.cuh"
// which kernels.launch.source_code replaces by this text before compiling (NVRTC, the host
// build and nvcc all see one self-contained source): the only project include there is, and it
// is expanded rather than resolved by the compiler because CuPy's kernel cache keys on the code
// string, so an edit here must change that string. Conventions as for the .cu sources.

// (t / s, t % s) for t >= 0, s > 0, kept as a pair that steps down by a fixed amount without
// dividing again: col2im and the pooling backward kernels walk t = iy + ph - ky * dy for
// ky = 0, 1, ..., and the window covers iy from output row t / s when t % s == 0.
struct tt_divmod {
    int q, m;  // t = q * s + m, 0 <= m < s
};

__device__ __forceinline__ tt_divmod tt_divide(int t, int s) {
    const int q = t / s;
    return {q, t - q * s};
}

__device__ __forceinline__ void tt_step_down(tt_divmod& t, tt_divmod by, int s) {
    t.q -= by.q;
    t.m -= by.m;
    if (t.m < 0) {
        t.m += s;
        t.q -= 1;
    }
}

// The multi-tensor kernels (optimizer updates, gradient accumulation): the tensor holding flat
// element i, the last k with offsets[k] <= i (binary search over count + 1 offsets from 0).
__device__ __forceinline__ int tt_tensor_of(const long long* __restrict__ offsets, int count,
                                            long long i) {
    int lo = 0;
    int hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= i) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}
