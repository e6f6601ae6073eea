// Deterministic scatter-add (engine.use_deterministic_algorithms(True)): CuPy's add.at uses
// atomics, whose order of addition, so the rounding of a repeated index's sum, changes from
// run to run. Here the host side sorts the values by target position (stably: equal targets
// keep their order) and finds each position's run [lo, hi); one thread per output position
// adds its run in that order, as NumPy's add.at does on the CPU.
//
// Conventions (see docs/design.md): no #include, 1-D grid-stride loops, C-contiguous pointers,
// parameters in the order (arrays..., long long total, int ints..., T scalars..., int flags...).

template <typename T>
__global__ void segment_add(const T* __restrict__ sorted_values, const long long* __restrict__ lo,
                            const long long* __restrict__ hi, T* __restrict__ out, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += stride) {
        T acc = out[p];
        for (long long k = lo[p]; k < hi[p]; ++k) {
            acc += sorted_values[k];
        }
        out[p] = acc;
    }
}
