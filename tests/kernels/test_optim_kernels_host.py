"""The fused optimizer kernels of ``kernels/cuda/optim.cu`` run on the CPU against
``kernels.optim_cpu``, for float and double and every flag combination.

Part 1 builds the source with ``cuda_sim.hostbuild`` for the name expressions ``kernels.optim_gpu``
compiles and launches each kernel directly, with the argument order written out here from the C
signatures (so a swapped argument in ``optim_gpu`` cannot hide behind a matching one here), over
grids that run one thread, wrap the grid-stride loop, and match the production launch. Part 2
runs ``kernels.optim_gpu`` itself through whatever ``cupy`` the suite has (stand-in or real GPU),
including a strided parameter.
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from cuda_sim import cupy as sim
from cuda_sim import hostbuild

from kernels import launch, optim_cpu, optim_gpu

BF16 = np.dtype(ml_dtypes.bfloat16)
TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}
# (blocks, threads): sequential, wrapping grid-stride loops, what optim_gpu launches.
GRIDS = [(1, 1), (3, 32), (None, launch.THREADS)]
SIZES = [0, 1, 257, 1000]


@pytest.fixture(scope="module")
def module():
    return hostbuild.build(launch.CUDA_DIR / "optim.cu", launch.name_expressions("optim.cu"))


def i32(flag) -> np.int32:
    return np.int32(bool(flag))


# Per kernel: the state arrays after p and g (None: an optional one left out, a null pointer),
# then the scalar and flag names in C argument order after n. ``kw`` holds the keyword arguments
# of the kernels.optim_* functions, plus the kernel-only flags amsgrad and centered.
def sgd_case(kw):
    states = ("buf",) if kw["momentum"] != 0 else (None,)
    scalars = ("lr", "momentum", "undamped", "weight_decay")
    return states, scalars, ("nesterov", "maximize", "first")


def momentum_case(kw):
    return ("v",), ("lr", "mu", "weight_decay"), ("nesterov",)


def adam_case(kw):
    states = ("m", "v", "vmax" if kw["amsgrad"] else None)
    scalars = ("step_size", "w1", "beta2", "w2", "eps", "weight_decay", "decay")
    return states, scalars, ("amsgrad", "maximize")


def rmsprop_case(kw):
    states = ("sq", "gavg" if kw["centered"] else None, "buf" if kw["momentum"] > 0 else None)
    scalars = ("lr", "alpha", "w", "eps", "weight_decay", "momentum")
    return states, scalars, ("centered", "maximize")


def adagrad_case(kw):
    return ("acc",), ("clr", "eps", "weight_decay"), ("maximize",)


def adadelta_case(kw):
    return ("sq", "acc"), ("lr", "rho", "w", "eps", "weight_decay"), ("maximize",)


def with_weights(kw):
    """`kw` plus the decay weights the host computes in double for the kernels (1 - beta, ...)."""
    out = dict(kw)
    for weight, decay in (("undamped", "dampening"), ("w1", "beta1"), ("w2", "beta2"),
                          ("w", "alpha"), ("w", "rho")):  # fmt: skip
        if decay in kw:
            out[weight] = 1.0 - kw[decay]
    return out


def grid_of(**axes):
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


KERNELS = {
    "sgd_update": (
        sgd_case,
        grid_of(
            lr=[0.1],
            momentum=[0.0, 0.9],
            dampening=[0.0, 0.25],
            weight_decay=[0.0, 0.1],
            nesterov=[False, True],
            maximize=[False, True],
            first=[False, True],
        ),
    ),
    "momentum_update": (
        momentum_case,
        grid_of(lr=[0.05], mu=[0.9], weight_decay=[0.0, 0.1], nesterov=[False, True]),
    ),
    "adam_update": (
        adam_case,
        grid_of(
            step_size=[0.003],
            beta1=[0.9],
            beta2=[0.999],
            eps=[1e-8],
            weight_decay=[0.0, 0.1],
            decay=[1.0, 0.99],
            amsgrad=[False, True],
            maximize=[False, True],
        ),
    ),
    "rmsprop_update": (
        rmsprop_case,
        grid_of(
            lr=[0.01],
            alpha=[0.99],
            eps=[1e-8],
            weight_decay=[0.0, 0.1],
            momentum=[0.0, 0.9],
            centered=[False, True],
            maximize=[False, True],
        ),
    ),
    "adagrad_update": (
        adagrad_case,
        grid_of(clr=[0.1], eps=[1e-10], weight_decay=[0.0, 0.1], maximize=[False, True]),
    ),
    "adadelta_update": (
        adadelta_case,
        grid_of(lr=[1.0], rho=[0.9], eps=[1e-6], weight_decay=[0.0, 0.1], maximize=[False, True]),
    ),
}
CASES = [(name, i) for name, (_, configs) in KERNELS.items() for i in range(len(configs))]
NONNEGATIVE = {"v", "vmax", "sq", "acc"}


def random_state(names, n, dtype, seed):
    rng = np.random.default_rng(seed)
    arrays = {
        "p": rng.standard_normal(n),
        "g": rng.standard_normal(n),
    }
    for name in names:
        if name is None:
            continue
        if name in NONNEGATIVE:
            arrays[name] = rng.uniform(0.5, 2.0, n)  # also keeps sq - gavg^2 > 0
        else:
            arrays[name] = rng.uniform(-0.5, 0.5, n)
    return {k: v.astype(dtype) for k, v in arrays.items()}


def run_cpu(name, states, arrays, kw):
    out = {k: v.copy() for k, v in arrays.items()}
    fn = getattr(optim_cpu, name)
    fn(out["p"], out["g"], *[out.get(s) if s else None for s in states], **kw)
    return out


def device_array(a):
    """A stand-in copy of ``a``; bfloat16 wrapped directly (the stand-in's cupy.asarray refuses
    it: these tests launch kernels, they use no CuPy bfloat16 routine)."""
    return sim.ndarray._wrap(a.copy()) if a.dtype == BF16 else sim.asarray(a)


def run_kernel(module, name, dtype, states, scalars, flags, arrays, kw, grid):
    dev = {k: device_array(v) for k, v in arrays.items()}
    n = arrays["p"].size
    blocks, threads = grid
    if blocks is None:
        blocks = launch.blocks(n)
    t = launch.opmath(dtype).type  # scalars in the compute dtype
    args = (
        dev["p"],
        dev["g"],
        *[dev[s] if s else None for s in states],
        np.int64(n),
        *[t(kw[s]) for s in scalars],
        *[i32(kw[f]) for f in flags],
    )
    targs = launch.template_args("optim.cu", np.dtype(dtype).name)
    module.get_function(f"{name}<{targs}>")((blocks,), (threads,), args)
    return {k: v.get() for k, v in dev.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float", "double"])
@pytest.mark.parametrize("name, index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_kernel_matches_cpu_update(module, name, index, dtype):
    make_case, configs = KERNELS[name]
    kw = dict(configs[index])
    states, scalars, flags = make_case(kw)
    cpu_kw = {k: v for k, v in kw.items() if k not in ("amsgrad", "centered")}
    for size, grid in zip(SIZES, itertools.cycle(GRIDS)):
        arrays = random_state(states, size, dtype, seed=index * 7 + size)
        want = run_cpu(name, states, arrays, cpu_kw)
        got = run_kernel(
            module, name, dtype, states, scalars, flags, arrays, with_weights(kw), grid
        )
        for key in arrays:
            assert got[key].dtype == dtype
            np.testing.assert_allclose(
                got[key],
                want[key],
                err_msg=f"{name} {kw} n={size} grid={grid}: {key}",
                **TOL[dtype],
            )
        if size:
            assert not np.array_equal(got["p"], arrays["p"]), "the kernel did not update p"
        np.testing.assert_array_equal(got["g"], arrays["g"])  # the gradient is read-only


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["half", "bfloat16"])
@pytest.mark.parametrize("name, index", CASES[::3], ids=[f"{n}-{i}" for n, i in CASES[::3]])
def test_low_precision_kernel_is_the_float32_update_rounded(module, name, index, dtype):
    """A float16/bfloat16 parameter and gradient with float32 state and scalars: the state is
    the float32 update's, and the parameter that update's result rounded once to the dtype."""
    make_case, configs = KERNELS[name]
    kw = dict(configs[index])
    states, scalars, flags = make_case(kw)
    cpu_kw = {k: v for k, v in kw.items() if k not in ("amsgrad", "centered")}
    u = 2.0**-11 if dtype == np.float16 else 2.0**-8
    for size, grid in zip(SIZES, itertools.cycle(GRIDS)):
        arrays = random_state(states, size, np.float32, seed=index * 7 + size)
        arrays["p"] = arrays["p"].astype(dtype)
        arrays["g"] = arrays["g"].astype(dtype)
        ref = {k: v.astype(np.float32) for k, v in arrays.items()}
        want = run_cpu(name, states, ref, cpu_kw)
        got = run_kernel(
            module, name, dtype, states, scalars, flags, arrays, with_weights(kw), grid
        )
        assert got["p"].dtype == np.dtype(dtype)
        np.testing.assert_allclose(got["p"].astype(np.float32), want["p"], rtol=2 * u, atol=1e-7)
        for key in states:
            if key is not None:
                assert got[key].dtype == np.float32
                np.testing.assert_allclose(got[key], want[key], **TOL[np.float32], err_msg=key)
        np.testing.assert_array_equal(got["g"], arrays["g"])


MULTI = {"sgd_update_multi", "adam_update_multi"}  # tested against the one-tensor kernels


def test_every_kernel_is_covered():
    names = {n.split("<")[0] for n in launch.name_expressions("optim.cu")}
    assert names == set(KERNELS) | MULTI
    assert set(KERNELS) == set(optim_cpu.__all__)


def test_every_kernel_checks_its_arguments(module):
    """A Python float where the kernel reads float is refused (CuPy would send a double)."""
    p = sim.asarray(np.zeros(4, np.float32))
    fn = module.get_function("adagrad_update<float, float>")
    with pytest.raises(hostbuild.KernelArgumentError, match="clr"):
        fn((1,), (32,), (p, p, p, np.int64(4), 0.1, np.float32(1e-10), np.float32(0), i32(0)))


# ---------------------------------------------------------------- Part 2: kernels.optim_gpu --


def test_optim_gpu_functions_match_cpu():
    """The wrappers pass arguments in kernel order: every rule through the stand-in."""
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(5)
    base = {k: rng.uniform(0.5, 1.5, (7, 9)).astype(np.float32) for k in ("p", "g", "a", "b", "c")}
    base["s"] = rng.uniform(-0.1, 0.1, (7, 9)).astype(np.float32)  # RMSprop's centered mean
    calls = {
        "sgd_update": (
            ("a",),
            dict(
                lr=0.1,
                momentum=0.9,
                dampening=0.1,
                weight_decay=0.01,
                nesterov=False,
                maximize=True,
                first=False,
            ),
        ),
        "momentum_update": (("a",), dict(lr=0.1, mu=0.9, weight_decay=0.01, nesterov=True)),
        "adam_update": (
            ("a", "b", "c"),
            dict(
                step_size=0.01,
                beta1=0.8,
                beta2=0.9,
                eps=1e-3,
                weight_decay=0.1,
                decay=0.99,
                maximize=False,
            ),
        ),
        "rmsprop_update": (
            ("b", "s", "c"),
            dict(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.5, maximize=True),
        ),
        "adagrad_update": (("a",), dict(clr=0.1, eps=1e-3, weight_decay=0.1, maximize=False)),
        "adadelta_update": (
            ("a", "b"),
            dict(lr=0.5, rho=0.8, eps=1e-3, weight_decay=0.1, maximize=True),
        ),
    }
    for name, (states, kw) in calls.items():
        host = {k: v.copy() for k, v in base.items()}
        getattr(optim_cpu, name)(host["p"], host["g"], *[host[s] for s in states], **kw)
        dev = {k: cupy.asarray(v) for k, v in base.items()}
        # A transposed (strided) parameter: the wrapper updates a contiguous copy and writes back.
        p_t = cupy.ascontiguousarray(dev["p"].T).T
        getattr(optim_gpu, name)(p_t, dev["g"], *[dev[s] for s in states], **kw)
        assert np.isfinite(host["p"]).all()
        np.testing.assert_allclose(cupy.asnumpy(p_t), host["p"], rtol=2e-6, err_msg=name)
        for s in states:
            np.testing.assert_allclose(cupy.asnumpy(dev[s]), host[s], rtol=2e-6, err_msg=name)


def test_optim_gpu_rejects_unsupported_dtype_and_shape():
    cupy = pytest.importorskip("cupy")
    p = cupy.zeros(3, dtype=cupy.int32)
    with pytest.raises(TypeError, match="int32"):
        optim_gpu.adagrad_update(p, p, p, clr=0.1, eps=1e-10, weight_decay=0.0, maximize=False)
    p = cupy.zeros(3, dtype=cupy.float16)  # a float16 parameter keeps float32 state
    with pytest.raises(ValueError, match="wanted float32"):
        optim_gpu.adagrad_update(p, p, p, clr=0.1, eps=1e-10, weight_decay=0.0, maximize=False)
    p = cupy.zeros(3, dtype=cupy.float32)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        optim_gpu.adagrad_update(
            p,
            cupy.zeros(4, dtype=cupy.float32),
            p,
            clr=0.1,
            eps=1e-10,
            weight_decay=0.0,
            maximize=False,
        )


# Multi-tensor kernels: one launch, the same bits as one launch per tensor ----------------------


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_multi_equals_one_launch_per_tensor(dtype, amsgrad):
    sizes = [5, 0, 300, 1, 1031]
    kw = dict(step_size=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01, decay=0.999,
              maximize=False)  # fmt: skip
    rng = np.random.default_rng(4)
    one = [{k: rng.standard_normal(n).astype(dtype) for k in "pgmv"} for n in sizes]
    for s in one:
        s["v"] = np.abs(s["v"])
        s["vmax"] = s["v"] * 1.5
    many = [{k: sim.asarray(a) for k, a in s.items()} for s in one]
    singles = [{k: sim.asarray(a) for k, a in s.items()} for s in one]
    for s in singles:
        optim_gpu.adam_update(s["p"], s["g"], s["m"], s["v"], s["vmax"] if amsgrad else None, **kw)
    optim_gpu.adam_update_multi(
        *([s[k] for s in many] for k in "pgmv"),
        [s["vmax"] for s in many] if amsgrad else None,
        **kw,
    )
    for a, b in zip(many, singles, strict=True):
        for k in ("p", "m", "v", "vmax"):
            np.testing.assert_array_equal(a[k].get(), b[k].get(), err_msg=k)


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_multi_equals_one_launch_per_tensor(momentum, first):
    kw = dict(lr=0.1, momentum=momentum, dampening=0.0, weight_decay=1e-3,
              nesterov=momentum > 0, maximize=True, first=first)  # fmt: skip
    rng = np.random.default_rng(5)
    one = [{k: rng.standard_normal(n).astype(np.float32) for k in "pgb"} for n in (7, 260, 3)]
    many = [{k: sim.asarray(a) for k, a in s.items()} for s in one]
    singles = [{k: sim.asarray(a) for k, a in s.items()} for s in one]
    for s in singles:
        optim_gpu.sgd_update(s["p"], s["g"], s["b"] if momentum else None, **kw)
    bufs = [s["b"] for s in many] if momentum else None
    optim_gpu.sgd_update_multi([s["p"] for s in many], [s["g"] for s in many], bufs, **kw)
    for a, b in zip(many, singles, strict=True):
        np.testing.assert_array_equal(a["p"].get(), b["p"].get())
        np.testing.assert_array_equal(a["b"].get(), b["b"].get())


def test_multi_refuses_a_strided_parameter_or_mixed_dtypes():
    p = [sim.asarray(np.zeros(4, np.float32)), sim.asarray(np.zeros((4, 2), np.float32))[:, 0]]
    g = [sim.asarray(np.zeros(4, np.float32))] * 2
    kw = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
              maximize=False, first=False)  # fmt: skip
    with pytest.raises(ValueError, match="parameter 1 .*C-contiguous"):
        optim_gpu.sgd_update_multi(p, g, None, **kw)
    p64 = [p[0], sim.asarray(np.zeros(4, np.float64))]
    with pytest.raises(ValueError, match="parameter 1 .*float32"):
        optim_gpu.sgd_update_multi(p64, g, None, **kw)
