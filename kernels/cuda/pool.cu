// Max and average pooling, forward and backward, compiled by NVRTC through cupy.RawModule and,
// for the tests, as host C++ through tests/cuda_sim's shim.
//
// x is (N, C, H, W) and y (N, C, OH, OW), both C-contiguous. argmax holds the offset
// ky * kw + kx of the maximum inside its window (-1 for a window entirely in the padding).
// The backward kernels are gathers, one thread per input element: no atomics.

template <typename T>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                   int* __restrict__ argmax, long long total, int H, int W,
                                   int OH, int OW, int kh, int kw, int sy, int sx, int ph,
                                   int pw, int dy, int dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ow = (int)(i % OW);
        const int oh = (int)((i / OW) % OH);
        const long long nc = i / ((long long)OW * OH);
        const T* plane = x + nc * H * W;
        const T zero = (T)0;
        T best = -(T)1 / zero;  // -inf: padding never wins
        int best_k = -1;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = oh * sy - ph + ky * dy;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ow * sx - pw + kx * dx;
                if (ix < 0 || ix >= W) continue;
                const T v = plane[iy * W + ix];
                // First valid element, then strict improvements; NaN always wins (PyTorch).
                if (best_k < 0 || v > best || v != v) {
                    best = v;
                    best_k = ky * kw + kx;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_k;
    }
}

// One thread per input element: sums gy over the windows covering it whose argmax it is.
template <typename T>
__global__ void max_pool2d_backward(const T* __restrict__ gy, const int* __restrict__ argmax,
                                    T* __restrict__ gx, long long total, int H, int W, int OH,
                                    int OW, int kh, int kw, int sy, int sx, int ph, int pw,
                                    int dy, int dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ix = (int)(i % W);
        const int iy = (int)((i / W) % H);
        const long long base = (i / ((long long)W * H)) * OH * OW;
        T sum = (T)0;
        for (int ky = 0; ky < kh; ++ky) {
            const int ty = iy + ph - ky * dy;
            if (ty < 0 || ty % sy != 0) continue;
            const int oh = ty / sy;
            if (oh >= OH) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int tx = ix + pw - kx * dx;
                if (tx < 0 || tx % sx != 0) continue;
                const int ow = tx / sx;
                if (ow >= OW) continue;
                const long long o = base + oh * OW + ow;
                if (argmax[o] == ky * kw + kx) sum += gy[o];
            }
        }
        gx[i] = sum;
    }
}

// Number of window cells inside the image (count_include_pad=0) or kh * kw.
__device__ inline int avg_pool_divisor(int oh, int ow, int H, int W, int kh, int kw, int sy,
                                       int sx, int ph, int pw, int count_include_pad) {
    if (count_include_pad) return kh * kw;
    const int y0 = oh * sy - ph;
    const int x0 = ow * sx - pw;
    const int rows = min(y0 + kh, H) - max(y0, 0);
    const int cols = min(x0 + kw, W) - max(x0, 0);
    return rows * cols;
}

template <typename T>
__global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total,
                                   int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                                   int ph, int pw, int count_include_pad) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ow = (int)(i % OW);
        const int oh = (int)((i / OW) % OH);
        const T* plane = x + (i / ((long long)OW * OH)) * H * W;
        T sum = (T)0;
        for (int iy = max(oh * sy - ph, 0); iy < min(oh * sy - ph + kh, H); ++iy) {
            for (int ix = max(ow * sx - pw, 0); ix < min(ow * sx - pw + kw, W); ++ix) {
                sum += plane[iy * W + ix];
            }
        }
        y[i] = sum / (T)avg_pool_divisor(oh, ow, H, W, kh, kw, sy, sx, ph, pw,
                                         count_include_pad);
    }
}

// One thread per input element: sums gy / divisor over the windows covering it.
template <typename T>
__global__ void avg_pool2d_backward(const T* __restrict__ gy, T* __restrict__ gx,
                                    long long total, int H, int W, int OH, int OW, int kh,
                                    int kw, int sy, int sx, int ph, int pw,
                                    int count_include_pad) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ix = (int)(i % W);
        const int iy = (int)((i / W) % H);
        const long long base = (i / ((long long)W * H)) * OH * OW;
        T sum = (T)0;
        for (int ky = 0; ky < kh; ++ky) {
            const int ty = iy + ph - ky;
            if (ty < 0 || ty % sy != 0) continue;
            const int oh = ty / sy;
            if (oh >= OH) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int tx = ix + pw - kx;
                if (tx < 0 || tx % sx != 0) continue;
                const int ow = tx / sx;
                if (ow >= OW) continue;
                sum += gy[base + oh * OW + ow] /
                       (T)avg_pool_divisor(oh, ow, H, W, kh, kw, sy, sx, ph, pw,
                                           count_include_pad);
            }
        }
        gx[i] = sum;
    }
}
