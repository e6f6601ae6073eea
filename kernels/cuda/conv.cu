// im2col / col2im for convolution (Chainer's column layout), compiled by NVRTC through
// cupy.RawModule and, for the tests, as host C++ through tests/cuda_sim's shim.
//
// col is (N, C, kh, kw, OH, OW), C-contiguous; x is (N, C, H, W), C-contiguous.
// Both kernels are gathers with 1-D grid-stride loops: no atomics, no shared memory.

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ col, long long total,
                       int H, int W, int kh, int kw, int OH, int OW, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ow = (int)(i % OW);
        const int oh = (int)((i / OW) % OH);
        const int kx = (int)((i / ((long long)OW * OH)) % kw);
        const int ky = (int)((i / ((long long)OW * OH * kw)) % kh);
        const long long nc = i / ((long long)OW * OH * kw * kh);
        const int iy = oh * sy - ph + ky * dy;
        const int ix = ow * sx - pw + kx * dx;
        T v = (T)0;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
            v = x[(nc * H + iy) * W + ix];
        }
        col[i] = v;
    }
}

// One thread per image element (n, c, iy, ix): sums the columns whose window covers it.
template <typename T>
__global__ void col2im(const T* __restrict__ col, T* __restrict__ x, long long total,
                       int H, int W, int kh, int kw, int OH, int OW, int sy, int sx,
                       int ph, int pw, int dy, int dx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const int ix = (int)(i % W);
        const int iy = (int)((i / W) % H);
        const long long nc = i / ((long long)W * H);
        T sum = (T)0;
        for (int ky = 0; ky < kh; ++ky) {
            const int ty = iy + ph - ky * dy;  // = oh * sy for a covering window
            if (ty < 0 || ty % sy != 0) continue;
            const int oh = ty / sy;
            if (oh >= OH) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int tx = ix + pw - kx * dx;
                if (tx < 0 || tx % sx != 0) continue;
                const int ow = tx / sx;
                if (ow >= OW) continue;
                sum += col[(((nc * kh + ky) * kw + kx) * OH + oh) * OW + ow];
            }
        }
        x[i] = sum;
    }
}
