// Max and average pooling, forward and backward, compiled by NVRTC through cupy.RawModule and,
// for the tests, as host C++ through tests/cuda_sim's shim.
//
// x is (N, C, H, W) and y (N, C, OH, OW), both C-contiguous. The integer parameters are
// kernels.geometry.LAUNCH_FIELDS, in that order, in every kernel (then flags). argmax holds the
// offset ky * kw + kx of the maximum inside its window (-1 for a window entirely in padding).
// The backward kernels are gathers, one thread per input element: no atomics, and no integer
// division inside the window loops.
// T is the storage type (__half, __nv_bfloat16, float, double) and A the type sums are formed in
// (float for the 16-bit types, kernels.launch.OPMATH); a maximum is exact in any of them.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "tt_common.cuh"  // tt_divmod, tt_divide, tt_step_down, tt_tensor_of

template <typename T, typename A>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                   int* __restrict__ argmax, long long total, int N, int C,
                                   int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                                   int ph, int pw, int dy, int dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / OW;
        const int ow = (int)(i - r * OW);
        const long long nc = r / OH;
        const int oh = (int)(r - nc * OH);
        const T* plane = x + nc * H * W;
        const A zero = (A)0;
        A best = -(A)1 / zero;  // -inf: padding never wins
        int best_k = -1;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = oh * sy - ph + ky * dy;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ow * sx - pw + kx * dx;
                if (ix < 0 || ix >= W) continue;
                const A v = (A)plane[iy * W + ix];
                // First valid element, then strict improvements; NaN always wins (PyTorch).
                if (best_k < 0 || v > best || v != v) {
                    best = v;
                    best_k = ky * kw + kx;
                }
            }
        }
        y[i] = (T)best;
        argmax[i] = best_k;
    }
}

// One thread per input element: sums gy over the windows covering it whose argmax it is.
template <typename T, typename A>
__global__ void max_pool2d_backward(const T* __restrict__ gy, const int* __restrict__ argmax,
                                    T* __restrict__ gx, long long total, int N, int C, int H,
                                    int W, int OH, int OW, int kh, int kw, int sy, int sx,
                                    int ph, int pw, int dy, int dx) {
    const tt_divmod ystep = tt_divide(dy, sy);
    const tt_divmod xstep = tt_divide(dx, sx);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / W;
        const int ix = (int)(i - r * W);
        const long long nc = r / H;
        const int iy = (int)(r - nc * H);
        const long long base = nc * OH * OW;
        const tt_divmod xstart = tt_divide(ix + pw, sx);
        tt_divmod ty = tt_divide(iy + ph, sy);
        A sum = (A)0;
        for (int ky = 0; ky < kh; ++ky, tt_step_down(ty, ystep, sy)) {
            if (ty.q < 0) break;  // ty only falls as ky grows
            if (ty.m != 0 || ty.q >= OH) continue;
            tt_divmod tx = xstart;
            for (int kx = 0; kx < kw; ++kx, tt_step_down(tx, xstep, sx)) {
                if (tx.q < 0) break;
                if (tx.m != 0 || tx.q >= OW) continue;
                const long long o = base + ty.q * OW + tx.q;
                if (argmax[o] == ky * kw + kx) sum += (A)gy[o];
            }
        }
        gx[i] = (T)sum;
    }
}

// Average pooling's divisor of window (oh, ow), PyTorch's rule (kernels.geometry's
// Geometry.avg_divisors, which the tests hold this to): divisor_override if > 0; else the window
// clipped to the padded input (count_include_pad) or to the input itself. Average pooling has no
// dilation (its geometry has dy = dx = 1).
__device__ inline int avg_pool_divisor(int oh, int ow, int H, int W, int kh, int kw, int sy,
                                       int sx, int ph, int pw, int count_include_pad,
                                       int divisor_override) {
    if (divisor_override > 0) return divisor_override;
    int y0 = oh * sy - ph;
    int x0 = ow * sx - pw;
    int y1 = min(y0 + kh, H + ph);
    int x1 = min(x0 + kw, W + pw);
    if (count_include_pad) return (y1 - y0) * (x1 - x0);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    y1 = min(y1, H);
    x1 = min(x1, W);
    return (y1 - y0) * (x1 - x0);
}

template <typename T, typename A>
__global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total,
                                   int N, int C, int H, int W, int OH, int OW, int kh, int kw,
                                   int sy, int sx, int ph, int pw, int dy, int dx,
                                   int count_include_pad, int divisor_override) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / OW;
        const int ow = (int)(i - r * OW);
        const long long nc = r / OH;
        const int oh = (int)(r - nc * OH);
        const T* plane = x + nc * H * W;
        A sum = (A)0;
        for (int iy = max(oh * sy - ph, 0); iy < min(oh * sy - ph + kh, H); ++iy) {
            for (int ix = max(ow * sx - pw, 0); ix < min(ow * sx - pw + kw, W); ++ix) {
                sum += (A)plane[iy * W + ix];
            }
        }
        y[i] = (T)(sum / (A)avg_pool_divisor(oh, ow, H, W, kh, kw, sy, sx, ph, pw,
                                         count_include_pad, divisor_override));
    }
}

// One thread per input element: sums gy / divisor over the windows covering it.
template <typename T, typename A>
__global__ void avg_pool2d_backward(const T* __restrict__ gy, T* __restrict__ gx,
                                    long long total, int N, int C, int H, int W, int OH, int OW,
                                    int kh, int kw, int sy, int sx, int ph, int pw, int dy,
                                    int dx, int count_include_pad, int divisor_override) {
    const tt_divmod ystep = tt_divide(1, sy);  // average pooling has no dilation
    const tt_divmod xstep = tt_divide(1, sx);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / W;
        const int ix = (int)(i - r * W);
        const long long nc = r / H;
        const int iy = (int)(r - nc * H);
        const long long base = nc * OH * OW;
        const tt_divmod xstart = tt_divide(ix + pw, sx);
        tt_divmod ty = tt_divide(iy + ph, sy);
        A sum = (A)0;
        for (int ky = 0; ky < kh; ++ky, tt_step_down(ty, ystep, sy)) {
            if (ty.q < 0) break;
            if (ty.m != 0 || ty.q >= OH) continue;
            tt_divmod tx = xstart;
            for (int kx = 0; kx < kw; ++kx, tt_step_down(tx, xstep, sx)) {
                if (tx.q < 0) break;
                if (tx.m != 0 || tx.q >= OW) continue;
                sum += (A)gy[base + ty.q * OW + tx.q] /
                       (A)avg_pool_divisor(ty.q, tx.q, H, W, kh, kw, sy, sx, ph, pw,
                                           count_include_pad, divisor_override);
            }
        }
        gx[i] = (T)sum;
    }
}
