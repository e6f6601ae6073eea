// im2col / col2im for convolution, compiled by NVRTC through cupy.RawModule and, for the tests,
// as host C++ through tests/cuda_sim's shim (docs: kernels/launch.py, kernels/geometry.py).
//
// x is (N, C, H, W), C-contiguous. col is (C, kh, kw, N, OH, OW), C-contiguous: read as the
// (C kh kw, N OH OW) matrix, each conv GEMM (forward, input and weight gradient) is one product
// with it, the batch folded into the GEMM (kernels/gpu.py).
// Both kernels are gathers with 1-D grid-stride loops: no atomics, no shared memory.
// The integer parameters are kernels.geometry.LAUNCH_FIELDS, in that order, in every kernel.
//
// T is the storage type (__half, __nv_bfloat16, float, double) and A the type sums are formed
// in (float for the 16-bit types, kernels.launch.OPMATH). Integer division is slow on a GPU
// (a div.s32 is a ~20-instruction sequence, a div.s64 a call), so each thread splits its index
// once and then steps through its window with additions (issue 12).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "tt_common.cuh"  // tt_divmod, tt_divide, tt_step_down, tt_tensor_of

// One thread per (channel, image, output pixel): writes the kh * kw column entries of its
// window, each a coalesced row of the (C kh kw, N OH OW) matrix across the threads of a warp.
// Three divisions per thread (was five per column entry).
template <typename T, typename A>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, long long total, int N,
                       int C, int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    const long long L = (long long)OH * OW;
    const long long NL = N * L;  // the stride between rows of the column matrix
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / L;  // (c, n); i = (c * N + n) * L + l
        const int l = (int)(i - r * L);
        const int oh = l / OW;
        const int ow = l - oh * OW;
        const int c = (int)(r / N);
        const int n = (int)(r - (long long)c * N);
        const T* plane = x + ((long long)n * C + c) * H * W;
        T* out = col + (long long)c * kh * kw * NL + n * L + l;
        const int y0 = oh * sy - ph;
        const int x0 = ow * sx - pw;
        for (int ky = 0, iy = y0; ky < kh; ++ky, iy += dy) {
            const bool row = iy >= 0 && iy < H;
            for (int kx = 0, ix = x0; kx < kw; ++kx, ix += dx) {
                *out = (row && ix >= 0 && ix < W) ? plane[iy * W + ix] : T(0);
                out += NL;
            }
        }
    }
}

// One thread per image element (n, c, iy, ix): sums, in A, the columns whose window covers it.
// The window offset ky covers iy from output row oh when iy + ph - ky * dy = oh * sy: the
// quotient and remainder of that by sy step down with ky (tt_step_down), so a thread divides
// seven times in all (was three plus one per window row and one per window element).
template <typename T, typename A>
__global__ void col2im(const T* __restrict__ col, T* __restrict__ x, long long total, int N,
                       int C, int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    const long long L = (long long)OH * OW;
    const tt_divmod ystep = tt_divide(dy, sy);
    const tt_divmod xstep = tt_divide(dx, sx);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / W;  // (n, c, iy)
        const int ix = (int)(i - r * W);
        const long long q = r / H;  // (n, c)
        const int iy = (int)(r - q * H);
        const int n = (int)(q / C);
        const int c = (int)(q - (long long)n * C);
        const T* base = col + ((long long)c * kh * kw * N + n) * L;
        const int ty0 = iy + ph;  // >= 0
        const int tx0 = ix + pw;
        const tt_divmod xstart = tt_divide(tx0, sx);
        tt_divmod ty = tt_divide(ty0, sy);
        A sum = A(0);
        for (int ky = 0; ky < kh; ++ky, tt_step_down(ty, ystep, sy)) {
            if (ty.q < 0) break;  // ty only falls as ky grows
            if (ty.m != 0 || ty.q >= OH) continue;
            tt_divmod tx = xstart;
            for (int kx = 0; kx < kw; ++kx, tt_step_down(tx, xstep, sx)) {
                if (tx.q < 0) break;
                if (tx.m != 0 || tx.q >= OW) continue;
                sum += (A)base[(long long)(ky * kw + kx) * N * L + ty.q * OW + tx.q];
            }
        }
        x[i] = (T)sum;
    }
}
