// Activation backwards in one pass each (issue 12: a mask, a cast and two or three arithmetic
// kernels per call before).
//
// Conventions (see docs/design.md): no #include, 1-D grid-stride loops, C-contiguous pointers,
// parameters in the order (arrays..., long long total, int ints..., T scalars..., int flags...).

// Leaky ReLU (ReLU at slope 0) from its output y: for 0 <= slope, y > 0 exactly where x > 0,
// so gx = y > 0 ? gy : slope * gy, as PyTorch's leaky_relu_backward (gradient slope at 0).
template <typename T>
__global__ void leaky_relu_backward(const T* __restrict__ y, const T* __restrict__ gy,
                                    T* __restrict__ gx, long long n, T slope) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        gx[i] = y[i] > T(0) ? gy[i] : slope * gy[i];
    }
}

// Leaky ReLU forward: y = x > 0 ? x : slope * x (one pass, no mask kept).
template <typename T>
__global__ void leaky_relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n,
                                   T slope) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T v = x[i];
        y[i] = v > T(0) ? v : slope * v;
    }
}

// tanh's backward from its output: gx = gy (1 - y^2) (was three kernels).
template <typename T>
__global__ void tanh_backward(const T* __restrict__ y, const T* __restrict__ gy,
                              T* __restrict__ gx, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T v = y[i];
        gx[i] = gy[i] * (T(1) - v * v);
    }
}

// Sigmoid forward: y = 1 / (1 + exp(-x)), the cpu formula (exp(-x) = inf gives 0); was three
// kernels.
template <typename T>
__global__ void sigmoid_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = T(1) / (T(1) + exp(-x[i]));
    }
}

// Sigmoid's backward from its output: gx = gy y (1 - y) (was three kernels).
template <typename T>
__global__ void sigmoid_backward(const T* __restrict__ y, const T* __restrict__ gy,
                                 T* __restrict__ gx, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T v = y[i];
        gx[i] = gy[i] * v * (T(1) - v);
    }
}
