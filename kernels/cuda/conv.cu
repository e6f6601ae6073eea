// im2col / col2im for convolution, compiled by NVRTC through cupy.RawModule and, for the tests,
// as host C++ through tests/cuda_sim's shim (docs: kernels/launch.py, kernels/geometry.py).
//
// x is (N, C, H, W), C-contiguous. col is (C, kh, kw, N, OH, OW), C-contiguous: read as the
// (C kh kw, N OH OW) matrix, each conv GEMM (forward, input and weight gradient) is one product
// with it, the batch folded into the GEMM (kernels/gpu.py).
// Both kernels are gathers with 1-D grid-stride loops: no atomics, no shared memory. Indices are
// split with one division per level and a multiply-subtract for the remainder.
// The integer parameters are kernels.geometry.LAUNCH_FIELDS, in that order, in every kernel.

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, long long total, int N,
                       int C, int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    const long long L = (long long)OH * OW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / L;  // (c, ky, kx, n)
        const int l = (int)(i - r * L);
        const int oh = l / OW;
        const int ow = l - oh * OW;
        const long long q = r / N;  // (c, ky, kx)
        const int n = (int)(r - q * N);
        const long long t = q / kw;  // (c, ky)
        const int kx = (int)(q - t * kw);
        const long long c = t / kh;
        const int ky = (int)(t - c * kh);
        const int iy = oh * sy - ph + ky * dy;
        const int ix = ow * sx - pw + kx * dx;
        T v = (T)0;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
            v = x[(((long long)n * C + c) * H + iy) * W + ix];
        }
        col[i] = v;
    }
}

// One thread per image element (n, c, iy, ix): sums the columns whose window covers it.
template <typename T>
__global__ void col2im(const T* __restrict__ col, T* __restrict__ x, long long total, int N,
                       int C, int H, int W, int OH, int OW, int kh, int kw, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    const long long L = (long long)OH * OW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long r = i / W;  // (n, c, iy)
        const int ix = (int)(i - r * W);
        const long long q = r / H;  // (n, c)
        const int iy = (int)(r - q * H);
        const long long n = q / C;
        const int c = (int)(q - n * C);
        T sum = (T)0;
        for (int ky = 0; ky < kh; ++ky) {
            const int ty = iy + ph - ky * dy;  // = oh * sy for a covering window
            if (ty < 0) break;                 // ty only falls as ky grows
            const int oh = ty / sy;
            if (oh * sy != ty || oh >= OH) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int tx = ix + pw - kx * dx;
                if (tx < 0) break;
                const int ow = tx / sx;
                if (ow * sx != tx || ow >= OW) continue;
                sum += col[((((long long)c * kh + ky) * kw + kx) * N + n) * L + oh * OW + ow];
            }
        }
        x[i] = sum;
    }
}
