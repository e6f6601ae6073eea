// Cross-entropy of logits x (N, C) against class indices: forward and backward in one pass
// each (issue 12: log_softmax + nll + the target check were ~25 kernels per training step).
//
// Conventions (see docs/design.md): no #include, 1-D grid-stride loops, C-contiguous pointers,
// parameters in the order (arrays..., long long total, int ints..., T scalars..., int flags...).
// Class indices are int64 (long long), PyTorch's and our targets' dtype.

// One thread per row i: lse[i] = log sum_c exp(x[i, c]) (max-shifted), and with t = target[i]
// out[i] = lse[i] - x[i, t], out[n + i] = 1 (the row counts toward the mean).
// An ignored row (t == ignore_index) gives 0 and 0. A target outside [0, C) gives 0 and n + 1,
// so the count of valid rows exceeds n: the host turns that into an IndexError (read later,
// no sync) instead of reading x out of bounds.
template <typename T>
__global__ void cross_entropy_forward(const T* __restrict__ x, const long long* __restrict__ target,
                                      T* __restrict__ out, T* __restrict__ lse, long long n,
                                      int classes, int ignore_index) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T* row = x + i * classes;
        T m = row[0];
        for (int c = 1; c < classes; ++c) {
            m = row[c] > m ? row[c] : m;
        }
        T s = T(0);
        for (int c = 0; c < classes; ++c) {
            s += exp(row[c] - m);
        }
        const T l = m + log(s);
        lse[i] = l;
        const long long t = target[i];
        if (t == (long long)ignore_index) {
            out[i] = T(0);
            out[n + i] = T(0);
        } else if (t < 0 || t >= (long long)classes) {
            out[i] = T(0);
            out[n + i] = T(n + 1);
        } else {
            out[i] = l - row[t];
            out[n + i] = T(1);
        }
    }
}

// One thread per element k = i * C + c: gx = (exp(x - lse[i]) - [c == t]) * gy[0] / count[0]
// (mean) or * gy[0] (sum); 0 on an ignored or out-of-range row.
template <typename T>
__global__ void cross_entropy_backward(const T* __restrict__ x,
                                       const long long* __restrict__ target,
                                       const T* __restrict__ lse, const T* __restrict__ gy,
                                       const T* __restrict__ count, T* __restrict__ gx,
                                       long long total, int classes, int ignore_index,
                                       int mean) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
        const long long i = k / classes;
        const long long c = k - i * classes;
        const long long t = target[i];
        if (t == (long long)ignore_index || t < 0 || t >= (long long)classes) {
            gx[k] = T(0);
        } else {
            const T p = exp(x[k] - lse[i]);
            gx[k] = (c == t ? p - T(1) : p) * (mean ? gy[0] / count[0] : gy[0]);
        }
    }
}

// Binary cross-entropy on logits, elementwise: y = max(x, 0) - x t + log1p(exp(-|x|)), finite
// for any x (engine.functional.BCEWithLogits's formula).
template <typename T>
__global__ void bce_logits_forward(const T* __restrict__ x, const T* __restrict__ t,
                                   T* __restrict__ y, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T v = x[i];
        y[i] = (v > T(0) ? v : T(0)) - v * t[i] + log1p(exp(-fabs(v)));
    }
}

// Its gradient for a mean (scale 1 / n) or sum (scale 1) of y, gy the reduction's one-element
// gradient: gx = gy[0] * scale * (sigmoid(x) - t), sigmoid from e = exp(-|x|) without overflow.
template <typename T>
__global__ void bce_logits_backward(const T* __restrict__ x, const T* __restrict__ t,
                                    const T* __restrict__ gy, T* __restrict__ gx, long long n,
                                    T scale) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T v = x[i];
        const T e = exp(-fabs(v));
        const T s = (v >= T(0) ? T(1) : e) / (T(1) + e);
        gx[i] = gy[0] * scale * (s - t[i]);
    }
}

// The cross-entropy forward's reduction for a small batch (n rows, the caller's threshold): one
// thread sums out[0:n] (the row losses) and out[n:2n] (the row counts) in double and writes
// loss[0] = sum / count (mean) or sum, aux[0] = count (the backward's divisor) and aux[1] = 1
// when a target was out of range (count > n), else 0: three kernels (sum, divide, compare)
// become one. total is 1.
template <typename T>
__global__ void cross_entropy_reduce(const T* __restrict__ out, T* __restrict__ loss,
                                     T* __restrict__ aux, long long total, int n, int mean) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        double s = 0.0, c = 0.0;
        for (int r = 0; r < n; ++r) {
            s += (double)out[r];
            c += (double)out[n + r];
        }
        const T count = (T)c;
        loss[0] = mean ? (T)s / count : (T)s;
        aux[0] = count;
        aux[1] = c > (double)n ? T(1) : T(0);
    }
}
