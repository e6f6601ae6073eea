// Training-mode batch norm over dim 1 of a contiguous (N, C, HW) array: two kernels forward
// (per-slice statistics, then normalise + affine + the running statistics) and two backward
// (per-slice sums, then the input, weight and bias gradients). Issue 12: as CuPy ops it was
// ~18 launches forward (with the running-statistic updates) and ~12 backward per layer.
//
// Conventions (see docs/design.md): no #include, 1-D grid-stride loops, C-contiguous pointers,
// parameters in the order (arrays..., long long total, int ints..., T scalars..., int flags...).
//
// No shared memory or barriers (the kernels also run as host C++ in CI), so a channel's sums
// are split over S slices: the first kernel of each pair gives one thread per (channel, slice),
// which reduces its run of M / S samples (M = N HW) in double and writes the slice's partial;
// the second kernel, one thread per element, combines its channel's S partials (S <= 16, read
// from cache) and writes its element; its threads i < C also write channel i's results.
// Slices cover samples m = n HW + p in order, so a slice walks along contiguous pixels.

// The samples [begin, end) of slice s of S over M: as equal as integer division makes them.
__device__ inline long long slice_begin(long long s, long long S, long long M) {
    return s * M / S;
}

// Thread t of a partials kernel: channel c = t / S and the samples [begin, end) of its slice
// s = t % S, with (n, p) the image and pixel of sample begin.
struct slice_run {
    long long c, begin, end, n, p;
};

__device__ inline slice_run slice_of(long long t, int S, long long M, int HW) {
    slice_run run;
    run.c = t / S;
    const long long s = t - run.c * S;
    run.begin = slice_begin(s, S, M);
    run.end = slice_begin(s + 1, S, M);
    run.n = run.begin / HW;
    run.p = run.begin - run.n * HW;
    return run;
}

// The size of the next slice, walking s = 0, 1, ...: slice_begin(s + 1) - slice_begin(s) =
// q + 1 when (s M) % S + r reaches S, else q, where q = M / S and r = M % S are split once per
// thread and rem carries (s M) % S. The per-element kernels combine S partials for every
// element, so this keeps 64-bit divisions (a call on the GPU) out of their loops.
__device__ __forceinline__ long long next_slice_size(long long q, int r, int S, int& rem) {
    rem += r;
    if (rem >= S) {
        rem -= S;
        return q + 1;
    }
    return q;
}

// Per (channel c, slice s), t = c S + s: the slice's mean and sum of squared deviations
// (two passes over its run, in double): part[c S + s] and part[C S + c S + s].
template <typename T>
__global__ void batch_norm_partials(const T* __restrict__ x, T* __restrict__ part,
                                    long long total, int N, int C, int HW, int S) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long M = (long long)N * HW;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const slice_run run = slice_of(t, S, M, HW);
        const long long c = run.c;
        double sum = 0.0;
        long long n = run.n, p = run.p;
        for (long long m = run.begin; m < run.end; ++m) {
            sum += (double)x[(n * C + c) * HW + p];
            if (++p == HW) { p = 0; ++n; }
        }
        const long long k = run.end - run.begin;
        const double mean = k > 0 ? sum / (double)k : 0.0;
        double m2 = 0.0;
        n = run.n;
        p = run.p;
        for (long long m = run.begin; m < run.end; ++m) {
            const double d = (double)x[(n * C + c) * HW + p] - mean;
            m2 += d * d;
            if (++p == HW) { p = 0; ++n; }
        }
        part[t] = (T)mean;
        part[(long long)C * S + t] = (T)m2;
    }
}

// Channel c's mean and biased variance from its S slice partials (Chan et al.'s combination:
// M2 = sum_s M2_s + k_s (mean_s - mean)^2), in double; q = M / S and r = M % S (next_slice_size).
template <typename T>
__device__ inline void combine_slices(const T* part, long long c, int C, int S, long long M,
                                      long long q, int r, double* mean, double* var) {
    double sum = 0.0;
    int rem = 0;
    for (int s = 0; s < S; ++s) {
        const double k = (double)next_slice_size(q, r, S, rem);
        sum += k * (double)part[c * S + s];
    }
    const double mu = sum / (double)M;
    double m2 = 0.0;
    rem = 0;
    for (int s = 0; s < S; ++s) {
        const double k = (double)next_slice_size(q, r, S, rem);
        const double d = (double)part[c * S + s] - mu;
        m2 += (double)part[(long long)C * S + c * S + s] + k * d * d;
    }
    *mean = mu;
    *var = m2 / (double)M;
}

// One thread per element i of x (N, C, HW): y = (x - mean) invstd * weight + bias (weight and
// bias when has_weight / has_bias). Threads i < C write channel i's mean, biased var and invstd
// and, with has_running, move the running statistics: r = (1 - momentum) r + momentum b, with
// b the mean and the unbiased variance var M / (M - 1) (M > 1: the caller checks).
template <typename T>
__global__ void batch_norm_forward(const T* __restrict__ x, const T* __restrict__ part,
                                   const T* weight, const T* bias, T* __restrict__ y,
                                   T* __restrict__ mean_out, T* __restrict__ var_out,
                                   T* __restrict__ invstd_out, T* running_mean,
                                   T* running_var, long long total, int N, int C, int HW, int S,
                                   T eps, T momentum, int has_weight, int has_bias,
                                   int has_running) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long M = (long long)N * HW;
    const long long q = M / S;
    const int r = (int)(M - q * S);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const long long c = (i / HW) % C;
        double mean, var;
        combine_slices(part, c, C, S, M, q, r, &mean, &var);
        const double invstd = 1.0 / sqrt(var + (double)eps);
        double v = ((double)x[i] - mean) * invstd;
        if (has_weight) v *= (double)weight[c];
        if (has_bias) v += (double)bias[c];
        y[i] = (T)v;
        if (i < C) {
            double cm, cv;
            combine_slices(part, i, C, S, M, q, r, &cm, &cv);
            mean_out[i] = (T)cm;
            var_out[i] = (T)cv;
            invstd_out[i] = (T)(1.0 / sqrt(cv + (double)eps));
            if (has_running) {
                const double mom = (double)momentum;
                const double unbiased = cv * (double)M / (double)(M - 1);
                running_mean[i] = (T)((1.0 - mom) * (double)running_mean[i] + mom * cm);
                running_var[i] = (T)((1.0 - mom) * (double)running_var[i] + mom * unbiased);
            }
        }
    }
}

// Per (channel c, slice s): the slice's sum of gy and of gy xhat, xhat = (x - mean) invstd, in
// double: part[c S + s] and part[C S + c S + s].
template <typename T>
__global__ void batch_norm_backward_partials(const T* __restrict__ gy, const T* __restrict__ x,
                                             const T* __restrict__ mean,
                                             const T* __restrict__ invstd, T* __restrict__ part,
                                             long long total, int N, int C, int HW, int S) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long M = (long long)N * HW;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const slice_run run = slice_of(t, S, M, HW);
        const long long c = run.c;
        const double mu = (double)mean[c], inv = (double)invstd[c];
        long long n = run.n, p = run.p;
        double sg = 0.0, sgx = 0.0;
        for (long long m = run.begin; m < run.end; ++m) {
            const long long k = (n * C + c) * HW + p;
            const double g = (double)gy[k];
            sg += g;
            sgx += g * ((double)x[k] - mu) * inv;
            if (++p == HW) { p = 0; ++n; }
        }
        part[t] = (T)sg;
        part[(long long)C * S + t] = (T)sgx;
    }
}

// Channel c's sum(gy) and sum(gy xhat) from its S backward partials, in double.
template <typename T>
__device__ inline void sum_slices(const T* part, long long c, int C, int S, double* sg,
                                  double* sgx) {
    const long long CS = (long long)C * S;
    *sg = 0.0;
    *sgx = 0.0;
    for (int s = 0; s < S; ++s) {
        *sg += (double)part[c * S + s];
        *sgx += (double)part[CS + c * S + s];
    }
}

// One thread per element i (want_gx; else total = C and only the channel results):
// gx = weight invstd (gy - sum(gy) / M - xhat sum(gy xhat) / M), the channel sums combined
// from the S partials in double; threads i < C write gweight[i] = sum(gy xhat) and
// gbias[i] = sum(gy) of channel i.
template <typename T>
__global__ void batch_norm_backward(const T* __restrict__ gy, const T* __restrict__ x,
                                    const T* __restrict__ mean, const T* __restrict__ invstd,
                                    const T* weight, const T* __restrict__ part, T* gx,
                                    T* __restrict__ gweight, T* __restrict__ gbias,
                                    long long total, int N, int C, int HW, int S,
                                    int has_weight, int want_gx) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long M = (long long)N * HW;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        if (want_gx) {
            const long long c = (i / HW) % C;
            double sg, sgx;
            sum_slices(part, c, C, S, &sg, &sgx);
            const double inv = (double)invstd[c];
            const double xhat = ((double)x[i] - (double)mean[c]) * inv;
            const double a = has_weight ? inv * (double)weight[c] : inv;
            gx[i] = (T)(a * ((double)gy[i] - sg / (double)M - xhat * sgx / (double)M));
        }
        if (i < C) {
            double sg, sgx;
            sum_slices(part, i, C, S, &sg, &sgx);
            gweight[i] = (T)sgx;
            gbias[i] = (T)sg;
        }
    }
}
