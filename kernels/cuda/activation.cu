// Activation forwards and backwards in one pass each (issue 12: a mask, a cast and two or three
// arithmetic kernels per call before; issue 14: the same for float16/bfloat16 under autocast).
//
// Conventions (see docs/design.md): no #include but CUDA's half headers, 1-D grid-stride loops,
// C-contiguous pointers, parameters in the order (arrays..., long long total, int ints...,
// A scalars..., int flags...).
// T is the storage type (__half, __nv_bfloat16, float, double) and A the type everything is
// computed in (float for the 16-bit types, kernels.launch.OPMATH; else T): each element is read
// into A, computed there and rounded once to T, so a float16 result is the float32 one rounded
// to float16, as PyTorch's opmath_t kernels give, and float32/float64 are what they were.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Leaky ReLU (ReLU at slope 0) from its output y: for 0 <= slope, y > 0 exactly where x > 0,
// so gx = y > 0 ? gy : slope * gy, as PyTorch's leaky_relu_backward (gradient slope at 0).
template <typename T, typename A>
__global__ void leaky_relu_backward(const T* __restrict__ y, const T* __restrict__ gy,
                                    T* __restrict__ gx, long long n, A slope) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A g = (A)gy[i];
        gx[i] = (T)((A)y[i] > A(0) ? g : slope * g);
    }
}

// Leaky ReLU forward: y = x > 0 ? x : slope * x (one pass, no mask kept).
template <typename T, typename A>
__global__ void leaky_relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n,
                                   A slope) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A v = (A)x[i];
        y[i] = (T)(v > A(0) ? v : slope * v);
    }
}

// tanh's backward from its output: gx = gy (1 - y^2) (was three kernels).
template <typename T, typename A>
__global__ void tanh_backward(const T* __restrict__ y, const T* __restrict__ gy,
                              T* __restrict__ gx, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A v = (A)y[i];
        gx[i] = (T)((A)gy[i] * (A(1) - v * v));
    }
}

// Sigmoid forward: y = 1 / (1 + exp(-x)), the cpu formula (exp(-x) = inf gives 0); was three
// kernels.
template <typename T, typename A>
__global__ void sigmoid_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A v = (A)x[i];
        y[i] = (T)(A(1) / (A(1) + exp(-v)));
    }
}

// Sigmoid's backward from its output: gx = gy y (1 - y) (was three kernels).
template <typename T, typename A>
__global__ void sigmoid_backward(const T* __restrict__ y, const T* __restrict__ gy,
                                 T* __restrict__ gx, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A v = (A)y[i];
        gx[i] = (T)((A)gy[i] * v * (A(1) - v));
    }
}

// Inverted dropout with its own counter-based random numbers (issue 12: the draws, a compare,
// a cast and two products were five kernels): element i keeps when u_i >= p, where u_i is the
// 24-bit float in [0, 1) of splitmix64 at position offset + i of the stream `key` (each 64-bit,
// passed as two ints). out = a * (kept ? scale : 0), for the forward (a = x) and the backward
// (a = gy: the same u_i regenerated, nothing stored). p is float32(p) widened to A (a float32
// comparison); scale is 1 / (1 - p) rounded to A, and the product is formed in A and rounded
// once to T (PyTorch's fused dropout); a non-finite a stays NaN where dropped, as a product
// with the mask.
__device__ inline unsigned long long dropout_join(int lo, int hi) {
    return (unsigned long long)(unsigned int)lo | ((unsigned long long)(unsigned int)hi << 32);
}

__device__ inline float dropout_uniform(unsigned long long key, unsigned long long position) {
    unsigned long long z = key + (position + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

template <typename T, typename A>
__global__ void dropout_apply(const T* __restrict__ a, T* __restrict__ out, long long n,
                              int key_lo, int key_hi, int offset_lo, int offset_hi, A p,
                              A scale) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const unsigned long long key = dropout_join(key_lo, key_hi);
    const unsigned long long offset = dropout_join(offset_lo, offset_hi);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float u = dropout_uniform(key, offset + (unsigned long long)i);
        out[i] = (T)((A)a[i] * ((A)u >= p ? scale : A(0)));
    }
}
