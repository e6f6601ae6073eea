// Fused optimizer updates: one elementwise pass per parameter, one kernel per update rule.
//
// Conventions (see docs/design.md): no #include, 1-D grid-stride loops, C-contiguous pointers,
// scalars of the parameter's type T (float or double) so float64 training keeps full precision.
// Instantiate with name expressions such as "adam_update<float>". Host code folds bias
// corrections and learning-rate decays into the scalars; flags are ints (0 or 1).
// Decay weights (1 - beta2, 1 - alpha, 1 - rho, 1 - dampening) are computed by the host in double
// and rounded once to T, as PyTorch passes them: in float, 1.0f - 0.999f is 0.00099998713.
//
// Every kernel reads the gradient, applies `maximize` (d = -g) and coupled L2 weight decay
// (d += weight_decay * p) first, exactly as torch.optim does, then its own rule. Optional state
// pointers (SGD's momentum buffer, AMSGrad's running max, RMSprop's grad average and buffer) are
// only dereferenced when the matching flag or hyper-parameter says they exist.

template <typename T>
__device__ __forceinline__ T tt_direction(const T g, const T p, const T weight_decay,
                                          const int maximize) {
    T d = maximize ? -g : g;
    if (weight_decay != T(0)) {
        d += weight_decay * p;
    }
    return d;
}

// torch.optim.SGD: buf = momentum * buf + (1 - dampening) * d (buf = d on the first step);
// d = nesterov ? d + momentum * buf : buf; p -= lr * d. The host passes undamped = 1 - dampening.
template <typename T>
__global__ void sgd_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf,
                           long long n, T lr, T momentum, T undamped, T weight_decay,
                           int nesterov, int maximize, int first) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T pi = p[i];
        T d = tt_direction(g[i], pi, weight_decay, maximize);
        if (momentum != T(0)) {
            const T b = first ? d : momentum * buf[i] + undamped * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] = pi - lr * d;
    }
}

// Textbook momentum: v = mu * v - lr * d; p += v.
// Nesterov (Sutskever/Bengio form, p is the look-ahead point): p += mu * v_new - lr * d.
template <typename T>
__global__ void momentum_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v,
                                long long n, T lr, T mu, T weight_decay, int nesterov) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T pi = p[i];
        const T d = tt_direction(g[i], pi, weight_decay, 0);
        const T vn = mu * v[i] - lr * d;
        v[i] = vn;
        p[i] = nesterov ? pi + (mu * vn - lr * d) : pi + vn;
    }
}

// Adam / AdamW / AMSGrad. With c1 = 1 - beta1^t and c2 = 1 - beta2^t the host passes
// step_size = lr * sqrt(c2) / c1 and eps = eps * sqrt(c2), so that
// p -= step_size * m / (sqrt(v) + eps) equals torch's p -= lr / c1 * m / (sqrt(v / c2) + eps).
// `decay` is AdamW's decoupled factor 1 - lr * weight_decay (1 for Adam); w1 = 1 - beta1 and
// w2 = 1 - beta2 come from the host (m moves toward d by w1, as torch's lerp).
template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                            T* __restrict__ v, T* __restrict__ vmax, long long n, T step_size,
                            T w1, T beta2, T w2, T eps, T weight_decay, T decay, int amsgrad,
                            int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T pi = p[i];
        const T d = tt_direction(g[i], pi, weight_decay, maximize);
        pi *= decay;
        const T mi = m[i] + w1 * (d - m[i]);
        T vi = beta2 * v[i] + w2 * d * d;
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        p[i] = pi - step_size * (mi / (sqrt(vi) + eps));
    }
}

// torch.optim.RMSprop: sq = alpha * sq + (1 - alpha) * d^2; centered subtracts the squared
// running mean gavg; den = sqrt(.) + eps; with momentum buf = momentum * buf + d / den,
// p -= lr * buf, else p -= lr * d / den. The host passes w = 1 - alpha.
template <typename T>
__global__ void rmsprop_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ sq,
                               T* __restrict__ gavg, T* __restrict__ buf, long long n, T lr,
                               T alpha, T w, T eps, T weight_decay, T momentum, int centered,
                               int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T pi = p[i];
        const T d = tt_direction(g[i], pi, weight_decay, maximize);
        T s = alpha * sq[i] + w * d * d;
        sq[i] = s;
        if (centered) {
            const T a = gavg[i] + w * (d - gavg[i]);
            gavg[i] = a;
            s -= a * a;
        }
        const T den = sqrt(s) + eps;
        if (momentum > T(0)) {
            const T b = momentum * buf[i] + d / den;
            buf[i] = b;
            p[i] = pi - lr * b;
        } else {
            p[i] = pi - lr * (d / den);
        }
    }
}

// torch.optim.Adagrad: acc += d^2; p -= clr * d / (sqrt(acc) + eps), where the host passes
// clr = lr / (1 + (t - 1) * lr_decay).
template <typename T>
__global__ void adagrad_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ acc,
                               long long n, T clr, T eps, T weight_decay, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T pi = p[i];
        const T d = tt_direction(g[i], pi, weight_decay, maximize);
        const T s = acc[i] + d * d;
        acc[i] = s;
        p[i] = pi - clr * (d / (sqrt(s) + eps));
    }
}

// torch.optim.Adadelta: sq = rho * sq + (1 - rho) * d^2;
// delta = sqrt(acc + eps) / sqrt(sq + eps) * d; acc = rho * acc + (1 - rho) * delta^2;
// p -= lr * delta. The host passes w = 1 - rho.
template <typename T>
__global__ void adadelta_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ sq,
                                T* __restrict__ acc, long long n, T lr, T rho, T w, T eps,
                                T weight_decay, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T pi = p[i];
        const T d = tt_direction(g[i], pi, weight_decay, maximize);
        const T s = rho * sq[i] + w * d * d;
        sq[i] = s;
        const T delta = sqrt(acc[i] + eps) / sqrt(s + eps) * d;
        acc[i] = rho * acc[i] + w * delta * delta;
        p[i] = pi - lr * delta;
    }
}

// Multi-tensor versions (issue 12; PyTorch's multi-tensor apply): one launch updates every
// tensor of a group. Each table holds one address per tensor (as unsigned long long; k-th
// tensor's elements at table[k]), and offsets[k] .. offsets[k + 1] is the k-th tensor's range
// in the flat index 0 .. n of the launch. Each element is updated exactly as the one-tensor
// kernel above does (same arithmetic, same order), so results are bit-identical to it.

// The tensor holding flat element i: the last k with offsets[k] <= i (binary search).
__device__ __forceinline__ int tt_tensor_of(const long long* __restrict__ offsets, int count,
                                            long long i) {
    int lo = 0;
    int hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= i) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

template <typename T>
__global__ void sgd_update_multi(const unsigned long long* __restrict__ p_table,
                                 const unsigned long long* __restrict__ g_table,
                                 const unsigned long long* __restrict__ buf_table,
                                 const long long* __restrict__ offsets, long long n, int count,
                                 T lr, T momentum, T undamped, T weight_decay, int nesterov,
                                 int maximize, int first) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const long long j = i - offsets[k];
        T* p = (T*)p_table[k];
        const T* g = (const T*)g_table[k];
        const T pi = p[j];
        T d = tt_direction(g[j], pi, weight_decay, maximize);
        if (momentum != T(0)) {
            T* buf = (T*)buf_table[k];
            const T b = first ? d : momentum * buf[j] + undamped * d;
            buf[j] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[j] = pi - lr * d;
    }
}

template <typename T>
__global__ void adam_update_multi(const unsigned long long* __restrict__ p_table,
                                  const unsigned long long* __restrict__ g_table,
                                  const unsigned long long* __restrict__ m_table,
                                  const unsigned long long* __restrict__ v_table,
                                  const unsigned long long* __restrict__ vmax_table,
                                  const long long* __restrict__ offsets, long long n, int count,
                                  T step_size, T w1, T beta2, T w2, T eps, T weight_decay,
                                  T decay, int amsgrad, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const long long j = i - offsets[k];
        T* p = (T*)p_table[k];
        T* m = (T*)m_table[k];
        T* v = (T*)v_table[k];
        T pi = p[j];
        const T d = tt_direction(((const T*)g_table[k])[j], pi, weight_decay, maximize);
        pi *= decay;
        const T mi = m[j] + w1 * (d - m[j]);
        T vi = beta2 * v[j] + w2 * d * d;
        m[j] = mi;
        v[j] = vi;
        if (amsgrad) {
            T* vmax = (T*)vmax_table[k];
            vi = vmax[j] > vi ? vmax[j] : vi;
            vmax[j] = vi;
        }
        p[j] = pi - step_size * (mi / (sqrt(vi) + eps));
    }
}
