// Fused optimizer updates: one elementwise pass per parameter, one kernel per update rule.
//
// Conventions (see docs/design.md): 1-D grid-stride loops, C-contiguous pointers. T is the
// parameter's (and gradient's) storage type: __half, __nv_bfloat16, float or double. A is the
// type everything is computed in, and the type of the scalars and of the optimizer state: float
// for the 16-bit types (PyTorch's opmath_type; kernels.launch.OPMATH), else T, so float64
// training keeps full precision and a float16 parameter is rounded once per step, with its state
// in float32 (an eps of 1e-8, or an exp_avg_sq of 1e-9, is 0 in float16).
// Instantiate with name expressions such as "adam_update<__half, float>". Host code folds bias
// corrections and learning-rate decays into the scalars; flags are ints (0 or 1).
// Decay weights (1 - beta2, 1 - alpha, 1 - rho, 1 - dampening) are computed by the host in double
// and rounded once to A, as PyTorch passes them: in float, 1.0f - 0.999f is 0.00099998713.
//
// Every kernel reads the gradient, applies `maximize` (d = -g) and coupled L2 weight decay
// (d += weight_decay * p) first, exactly as torch.optim does, then its own rule. Optional state
// pointers (SGD's momentum buffer, AMSGrad's running max, RMSprop's grad average and buffer) are
// only dereferenced when the matching flag or hyper-parameter says they exist.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include "tt_common.cuh"  // tt_divmod, tt_divide, tt_step_down, tt_tensor_of

template <typename A>
__device__ __forceinline__ A tt_direction(const A g, const A p, const A weight_decay,
                                          const int maximize) {
    A d = maximize ? -g : g;
    if (weight_decay != A(0)) {
        d += weight_decay * p;
    }
    return d;
}

// torch.optim.SGD: buf = momentum * buf + (1 - dampening) * d (buf = d on the first step);
// d = nesterov ? d + momentum * buf : buf; p -= lr * d. The host passes undamped = 1 - dampening.
template <typename T, typename A>
__global__ void sgd_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ buf,
                           long long n, A lr, A momentum, A undamped, A weight_decay,
                           int nesterov, int maximize, int first) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A pi = (A)p[i];
        A d = tt_direction((A)g[i], pi, weight_decay, maximize);
        if (momentum != A(0)) {
            const A b = first ? d : momentum * buf[i] + undamped * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] = (T)(pi - lr * d);
    }
}

// Textbook momentum: v = mu * v - lr * d; p += v.
// Nesterov (Sutskever/Bengio form, p is the look-ahead point): p += mu * v_new - lr * d.
template <typename T, typename A>
__global__ void momentum_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ v,
                                long long n, A lr, A mu, A weight_decay, int nesterov) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A pi = (A)p[i];
        const A d = tt_direction((A)g[i], pi, weight_decay, 0);
        const A vn = mu * v[i] - lr * d;
        v[i] = vn;
        p[i] = (T)(nesterov ? pi + (mu * vn - lr * d) : pi + vn);
    }
}

// Adam / AdamW / AMSGrad. With c1 = 1 - beta1^t and c2 = 1 - beta2^t the host passes
// step_size = lr * sqrt(c2) / c1 and eps = eps * sqrt(c2), so that
// p -= step_size * m / (sqrt(v) + eps) equals torch's p -= lr / c1 * m / (sqrt(v / c2) + eps).
// `decay` is AdamW's decoupled factor 1 - lr * weight_decay (1 for Adam); w1 = 1 - beta1 and
// w2 = 1 - beta2 come from the host (m moves toward d by w1, as torch's lerp).
template <typename T, typename A>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ m,
                            A* __restrict__ v, A* __restrict__ vmax, long long n, A step_size,
                            A w1, A beta2, A w2, A eps, A weight_decay, A decay, int amsgrad,
                            int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        A pi = (A)p[i];
        const A d = tt_direction((A)g[i], pi, weight_decay, maximize);
        pi *= decay;
        const A mi = m[i] + w1 * (d - m[i]);
        A vi = beta2 * v[i] + w2 * d * d;
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        p[i] = (T)(pi - step_size * (mi / (sqrt(vi) + eps)));
    }
}

// torch.optim.RMSprop: sq = alpha * sq + (1 - alpha) * d^2; centered subtracts the squared
// running mean gavg; den = sqrt(.) + eps; with momentum buf = momentum * buf + d / den,
// p -= lr * buf, else p -= lr * d / den. The host passes w = 1 - alpha.
template <typename T, typename A>
__global__ void rmsprop_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ sq,
                               A* __restrict__ gavg, A* __restrict__ buf, long long n, A lr,
                               A alpha, A w, A eps, A weight_decay, A momentum, int centered,
                               int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A pi = (A)p[i];
        const A d = tt_direction((A)g[i], pi, weight_decay, maximize);
        A s = alpha * sq[i] + w * d * d;
        sq[i] = s;
        if (centered) {
            const A a = gavg[i] + w * (d - gavg[i]);
            gavg[i] = a;
            s -= a * a;
        }
        const A den = sqrt(s) + eps;
        if (momentum > A(0)) {
            const A b = momentum * buf[i] + d / den;
            buf[i] = b;
            p[i] = (T)(pi - lr * b);
        } else {
            p[i] = (T)(pi - lr * (d / den));
        }
    }
}

// torch.optim.Adagrad: acc += d^2; p -= clr * d / (sqrt(acc) + eps), where the host passes
// clr = lr / (1 + (t - 1) * lr_decay).
template <typename T, typename A>
__global__ void adagrad_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ acc,
                               long long n, A clr, A eps, A weight_decay, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A pi = (A)p[i];
        const A d = tt_direction((A)g[i], pi, weight_decay, maximize);
        const A s = acc[i] + d * d;
        acc[i] = s;
        p[i] = (T)(pi - clr * (d / (sqrt(s) + eps)));
    }
}

// torch.optim.Adadelta: sq = rho * sq + (1 - rho) * d^2;
// delta = sqrt(acc + eps) / sqrt(sq + eps) * d; acc = rho * acc + (1 - rho) * delta^2;
// p -= lr * delta. The host passes w = 1 - rho.
template <typename T, typename A>
__global__ void adadelta_update(T* __restrict__ p, const T* __restrict__ g, A* __restrict__ sq,
                                A* __restrict__ acc, long long n, A lr, A rho, A w, A eps,
                                A weight_decay, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const A pi = (A)p[i];
        const A d = tt_direction((A)g[i], pi, weight_decay, maximize);
        const A s = rho * sq[i] + w * d * d;
        sq[i] = s;
        const A delta = sqrt(acc[i] + eps) / sqrt(s + eps) * d;
        acc[i] = rho * acc[i] + w * delta * delta;
        p[i] = (T)(pi - lr * delta);
    }
}

// Multi-tensor versions (issue 12; PyTorch's multi-tensor apply): one launch updates every
// tensor of a group. Each table holds one address per tensor (as unsigned long long; k-th
// tensor's elements at table[k]), and offsets[k] .. offsets[k + 1] is the k-th tensor's range
// in the flat index 0 .. n of the launch. Each element is updated exactly as the one-tensor
// kernel above does (same arithmetic, same order), so results are bit-identical to it.

template <typename T, typename A>
__global__ void sgd_update_multi(const unsigned long long* __restrict__ p_table,
                                 const unsigned long long* __restrict__ g_table,
                                 const unsigned long long* __restrict__ buf_table,
                                 const long long* __restrict__ offsets, long long n, int count,
                                 A lr, A momentum, A undamped, A weight_decay, int nesterov,
                                 int maximize, int first) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const long long j = i - offsets[k];
        T* p = (T*)p_table[k];
        const T* g = (const T*)g_table[k];
        const A pi = (A)p[j];
        A d = tt_direction((A)g[j], pi, weight_decay, maximize);
        if (momentum != A(0)) {
            A* buf = (A*)buf_table[k];
            const A b = first ? d : momentum * buf[j] + undamped * d;
            buf[j] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[j] = (T)(pi - lr * d);
    }
}

template <typename T, typename A>
__global__ void adam_update_multi(const unsigned long long* __restrict__ p_table,
                                  const unsigned long long* __restrict__ g_table,
                                  const unsigned long long* __restrict__ m_table,
                                  const unsigned long long* __restrict__ v_table,
                                  const unsigned long long* __restrict__ vmax_table,
                                  const long long* __restrict__ offsets, long long n, int count,
                                  A step_size, A w1, A beta2, A w2, A eps, A weight_decay,
                                  A decay, int amsgrad, int maximize) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int k = tt_tensor_of(offsets, count, i);
        const long long j = i - offsets[k];
        T* p = (T*)p_table[k];
        A* m = (A*)m_table[k];
        A* v = (A*)v_table[k];
        A pi = (A)p[j];
        const A d = tt_direction((A)((const T*)g_table[k])[j], pi, weight_decay, maximize);
        pi *= decay;
        const A mi = m[j] + w1 * (d - m[j]);
        A vi = beta2 * v[j] + w2 * d * d;
        m[j] = mi;
        v[j] = vi;
        if (amsgrad) {
            A* vmax = (A*)vmax_table[k];
            vi = vmax[j] > vi ? vmax[j] : vi;
            vmax[j] = vi;
        }
        p[j] = (T)(pi - step_size * (mi / (sqrt(vi) + eps)));
    }
}
