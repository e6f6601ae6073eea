// Gradient accumulation: out_k = a_k + b_k for every tensor k of a group in one launch (issue
// 12: autograd added each parameter's gradient into its .grad in a kernel of its own, e.g. a
// GAN discriminator's parameters, reached twice per backward and again by the generator's).
//
// Conventions (see docs/design.md): no #include but tt_common.cuh, 1-D grid-stride loops,
// C-contiguous pointers, parameters in the order (arrays..., long long total, int ints...,
// T scalars..., int flags...).
// Each table holds one address per tensor (as unsigned long long); offsets[k] .. offsets[k + 1]
// is the k-th tensor's range in the flat index 0 .. n of the launch (kernels/cuda/optim.cu's layout).

#include "tt_common.cuh"  // tt_divmod, tt_divide, tt_step_down, tt_tensor_of

template <typename T>
__global__ void add_multi(const unsigned long long* __restrict__ a_table,
                          const unsigned long long* __restrict__ b_table,
                          const unsigned long long* __restrict__ out_table,
                          const long long* __restrict__ offsets, long long n, int count) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const long long j = i - offsets[k];
        const T* a = (const T*)a_table[k];
        const T* b = (const T*)b_table[k];
        T* out = (T*)out_table[k];
        out[j] = a[j] + b[j];
    }
}

// GradScaler's unscale and inf/NaN check of an optimizer's gradients in one launch (PyTorch's
// _amp_foreach_non_finite_check_and_unscale_; issue 14: a concatenation, a multiply, isfinite,
// all and a negation before): flat[i] = g_k[j] * inv_scale into one new buffer (the gradients
// become views of it: no gradient is written in place, as two .grads may be one array), and
// found[0] = 1 where a product is inf or NaN. found starts at 0 (the host zeroes it); every
// writer stores the same 1, so no atomic is needed. (v - v) is NaN exactly when v is not finite.
template <typename T>
__global__ void unscale_multi(const unsigned long long* __restrict__ g_table,
                              const long long* __restrict__ offsets, T* __restrict__ flat,
                              int* __restrict__ found, long long n, int count, T inv_scale) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const T v = ((const T*)g_table[k])[i - offsets[k]] * inv_scale;
        flat[i] = v;
        if ((v - v) != (v - v)) {
            found[0] = 1;
        }
    }
}
