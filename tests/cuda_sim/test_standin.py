"""The CuPy stand-in behaves like CuPy where real CuPy bites: host and device arrays do not mix,
reductions stay on the device, RawModule checks launches, and only CuPy's API is offered."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import cuda_sim
from cuda_sim import cupy as cp
from cuda_sim import cupyx
from cuda_sim.cupy import _api

# ---------------------------------------------------------------- host <-> device


def test_device_array_is_not_a_numpy_array() -> None:
    d = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert isinstance(d, cp.ndarray) and not isinstance(d, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(d)
    np.testing.assert_array_equal(d.get(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(cp.asnumpy(d), d.get())


def test_asarray_copies_host_data_and_keeps_device_arrays() -> None:
    host = np.ones(3, dtype=np.float32)
    d = cp.asarray(host)
    host[0] = 5
    assert d.get()[0] == 1
    assert cp.asarray(d) is d
    assert cp.asarray(d, dtype=cp.float64).dtype == np.float64


def test_host_arrays_do_not_mix_with_device_arrays() -> None:
    d, host = cp.ones(3), np.ones(3)
    for mixed in (lambda: d + host, lambda: host + d, lambda: cp.maximum(d, host)):
        with pytest.raises(TypeError, match="host numpy.ndarray"):
            mixed()
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        d[...] = host
    d[...] = np.float32(2)  # scalars are fine
    assert float((d * np.float64(2) + 1).sum()) == 15.0


def test_results_are_device_arrays_and_reductions_are_0d() -> None:
    d = cp.arange(12, dtype=cp.float32).reshape(3, 4)
    total = d.sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and float(total) == 66.0
    assert isinstance(cp.exp(d), cp.ndarray) and isinstance(np.exp(d), cp.ndarray)
    assert isinstance(d.max(axis=1, keepdims=True), cp.ndarray)
    assert isinstance(d[0], cp.ndarray) and isinstance(d.T, cp.ndarray)
    assert isinstance(np.concatenate([d, d]), cp.ndarray)  # __array_function__ dispatch
    assert d.argmax().item() == 11


def test_out_argument_returns_the_same_device_array() -> None:
    a, out = cp.ones(4), cp.zeros(4)
    assert cp.add(a, a, out=out) is out
    assert out.get().tolist() == [2.0] * 4
    out += a
    assert out.get().tolist() == [3.0] * 4


def test_scatter_add_and_ufunc_at() -> None:
    a = cp.zeros(4, dtype=cp.float32)
    idx = cp.asarray(np.array([0, 1, 1, 3]))
    cupyx.scatter_add(a, idx, cp.ones(4, dtype=cp.float32))
    cp.add.at(a, idx, 1.0)
    assert a.get().tolist() == [2.0, 4.0, 0.0, 2.0]


def test_ascontiguousarray_and_empty() -> None:
    d = cp.arange(10.0)
    assert cp.ascontiguousarray(d) is d
    strided = d[::2]
    assert not strided.flags.c_contiguous
    assert cp.ascontiguousarray(strided).flags.c_contiguous
    with pytest.raises(TypeError, match="needs a cupy.ndarray"):
        cp.ascontiguousarray(np.arange(3))
    assert np.isnan(cp.empty(3, dtype=cp.float32).get()).all()  # uninitialised reads show up


def test_get_array_module() -> None:
    assert cp.get_array_module(cp.ones(1), 1.0) is cp
    assert cp.get_array_module(np.ones(1)) is np


def test_dlpack_shares_device_memory_and_refuses_host_memory() -> None:
    d = cp.arange(4.0)
    shared = cp.from_dlpack(d)
    shared[0] = 7.0
    assert d.get()[0] == 7.0
    assert d.__dlpack_device__() == (2, 0)
    with pytest.raises(TypeError, match="not CUDA"):
        cp.from_dlpack(np.arange(3.0))


# ---------------------------------------------------------------- random


def test_generator_is_seeded_and_has_cupys_dtypes() -> None:
    a = cp.random.default_rng(3).standard_normal((2, 3), dtype=cp.float32)
    b = cp.random.default_rng(3).standard_normal((2, 3), dtype=cp.float32)
    assert isinstance(a, cp.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a.get(), b.get())
    gen = cp.random.default_rng(0)
    assert gen.random(size=None).shape == ()  # 0-d device array, never a Python float
    ints = gen.integers(2, 5, size=1000).get()
    assert ints.min() == 2 and ints.max() == 4
    with pytest.raises(TypeError, match="Unsupported dtype"):
        gen.standard_normal(3, dtype=cp.int32)


def test_generator_offers_only_what_cupy_has() -> None:
    gen = cp.random.default_rng(0)
    for missing in ("normal", "permutation", "choice", "shuffle"):
        assert not hasattr(gen, missing), missing
    assert cp.random.permutation(5).get().tolist() != []  # the legacy API has permutation


# ---------------------------------------------------------------- cuda runtime


def test_two_simulated_devices() -> None:
    assert cp.cuda.runtime.getDeviceCount() == 2
    with cp.cuda.Device(0) as dev:
        assert dev.id == 0 and cp.cuda.runtime.getDevice() == 0
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="invalid device ordinal"):
        cp.cuda.Device(2)
    assert cp.ones(1).device.id == 0


def test_arrays_remember_their_device_and_work_only_where_current() -> None:
    # As CuPy without peer access: a kernel on arrays of another device than the current one
    # raises; views, copies and transfers to the host work from anywhere.
    a0 = cp.arange(6.0).reshape(2, 3)
    with cp.cuda.Device(1):
        a1 = cp.ones((2, 3))
        assert a1.device.id == 1 and a1.data.device_id == 1 and (a1 + a1).device.id == 1
        for op in (
            lambda: a0 + a1,
            lambda: a1 * a0,
            lambda: a0.sum(),
            lambda: cp.exp(a0),
            lambda: cp.concatenate([a1, a0]),
            lambda: a0[cp.asarray([0, 1])],
            lambda: a0.__setitem__(0, 1.0),
            lambda: a0.astype(cp.float32),
        ):
            with pytest.raises(ValueError, match=r"resides \(0\).*current device \(1\)"):
                op()
        assert a0.T.device.id == 0 and a0[0].device.id == 0 and a0.reshape(3, 2).device.id == 0
        moved = a0.copy()  # CuPy copies between devices onto the current one
        assert moved.device.id == 1 and moved.get().tolist() == a0.get().tolist()
        assert a0.get().sum() == 15.0 and a0.tolist()[1] == [3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match=r"resides \(1\).*current device \(0\)"):
        a1 - a0


def test_a_raw_kernel_launch_needs_its_arrays_on_the_current_device() -> None:
    code = 'extern "C" __global__ void fill(float* y, long long n) {\n'
    code += "    for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
    code += "         i += (long long)blockDim.x * gridDim.x) y[i] = 1.0f;\n}\n"
    fill = cp.RawKernel(code, "fill")
    with cp.cuda.Device(1):
        y1 = cp.zeros(4, dtype=cp.float32)
    with pytest.raises(ValueError, match="argument 0 lives on device 1 but device 0 is current"):
        fill((1,), (32,), (y1, 4))
    with y1.device:
        fill((1,), (32,), (y1, 4))
    assert y1.get().tolist() == [1.0] * 4


def test_events_time_in_milliseconds() -> None:
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    cp.ones(1000).sum()
    time.sleep(0.02)
    end.record()
    end.synchronize()
    assert 19.0 <= cp.cuda.get_elapsed_time(start, end) < 2000.0  # ~20 ms, not 0.02


def test_elementwise_kernel_is_not_offered() -> None:
    with pytest.raises(AttributeError, match="kernels/cuda"):
        cp.ElementwiseKernel  # noqa: B018


# ---------------------------------------------------------------- RawModule

CODE = r"""
template <typename T>
__global__ void scale(T* y, const T* x, T a, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        y[i] = a * x[i];
}
extern "C" __global__ void iota(int* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        out[i] = i;
}
"""


def test_raw_module_runs_template_and_extern_c_kernels() -> None:
    mod = cp.RawModule(code=CODE, options=("--std=c++17",), name_expressions=["scale<double>"])
    x, y = cp.arange(5.0), cp.zeros(5)
    mod.get_function("scale<double>")((1,), (4,), (y, x, 2.0, np.int32(5)))
    assert y.get().tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    out = cp.zeros(7, dtype=cp.int32)
    cp.RawModule(code=CODE).get_function("iota")((2,), (2,), (out, np.int32(7)))
    assert out.get().tolist() == list(range(7))


def test_raw_module_errors_like_cupy() -> None:
    with pytest.raises(TypeError, match="expected tuple, got list"):
        cp.RawModule(code=CODE, options=["--std=c++17"])
    mod = cp.RawModule(code=CODE, name_expressions=["scale<double>"])
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="named symbol not found"):
        mod.get_function("scale<float>")  # not in name_expressions
    f = mod.get_function("scale<double>")
    with pytest.raises(TypeError, match=r"parameter 3 'n'.*numpy\.int32"):
        f((1,), (4,), (cp.zeros(5), cp.zeros(5), 2.0, 5))


# ---------------------------------------------------------------- installation


def test_install_makes_import_cupy_give_the_stand_in(monkeypatch) -> None:
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("cupy", "cupyx")}
    try:
        cuda_sim.install()
        import cupy
        import cupy.cuda.runtime
        import cupyx.scipy.special

        assert cuda_sim.is_installed() and cupy is cp
        assert cupy.cuda.runtime.getDeviceCount() == 2
        assert abs(float(cupyx.scipy.special.erf(cupy.asarray(0.5))) - 0.5204998778) < 1e-9
    finally:
        cuda_sim.uninstall()
        sys.modules.update(saved)


# ---------------------------------------------------------------- only CuPy's API


def test_a_function_cupy_lacks_raises_attribute_error() -> None:
    # NumPy has all of these; CuPy 14.2 does not, so on a GPU each is an AttributeError.
    d = cp.zeros((3, 4), dtype=cp.float32)
    for get in (
        lambda: cp.unstack,
        lambda: cp.vecdot,
        lambda: cp.lib.stride_tricks.broadcast_shape,
        lambda: cupyx.scipy.special.agm,
        lambda: d.to_device,
        lambda: d.flags.writeable,  # NumPy's flags have it, CuPy's Flags do not
        lambda: d.flags.aligned,
    ):
        with pytest.raises(AttributeError, match=f"CuPy {_api.VERSION} has no"):
            get()
    assert "unstack" not in dir(cp) and "take_along_axis" in dir(cp)
    assert float(cp.take_along_axis(d, cp.zeros((3, 1), dtype=cp.int64), axis=1).sum()) == 0.0


def test_numpy_functions_on_device_arrays_dispatch_only_to_what_cupy_has() -> None:
    d = cp.ones((2, 3))
    assert isinstance(np.linalg.norm(d), cp.ndarray)  # numpy.linalg.norm -> cupy.linalg.norm
    with pytest.raises(TypeError, match="no implementation found for 'numpy.unstack'"):
        np.unstack(d)
    with pytest.raises(TypeError, match="'where'"):
        np.exp(d, where=d > 0)  # __array_ufunc__ -> cupy.exp, which takes no where=


def test_keywords_cupy_lacks_raise_type_error() -> None:
    d = cp.arange(6.0).reshape(2, 3)
    for call in (
        lambda: cp.sum(d, where=d > 0),
        lambda: cp.clip(d, min=0.0),  # NumPy 2 aliases; CuPy has a_min/a_max only
        lambda: d.max(initial=0.0),
        lambda: d.copy().sort(stable=True),
        lambda: cp.linspace(0, 1, 3, device="cuda"),
        lambda: cp.exp(d, where=d > 0),
        lambda: d.item(0),
    ):
        with pytest.raises(TypeError, match="CuPy|Wrong arguments|positional"):
            call()
    assert d.sum(axis=0, keepdims=True).shape == (1, 3)
    assert cp.clip(d, 1.0, 2.0).get().tolist() == [[1.0, 1.0, 2.0], [2.0, 2.0, 2.0]]
    assert d.reshape(3, 2).shape == d.reshape((3, 2), order="C").shape == (3, 2)


def test_ufunc_methods_and_scatter_dtypes_as_in_cupy() -> None:
    d = cp.arange(6.0, dtype=cp.float32).reshape(2, 3)
    assert cp.add.reduce(d, axis=0).get().tolist() == [3.0, 5.0, 7.0]
    assert cp.multiply.accumulate(d[0]).get().tolist() == [0.0, 0.0, 0.0]
    assert cp.maximum.outer(d[0], d[0]).shape == (3, 3)
    for unsupported in (
        lambda: cp.maximum.reduce(d),
        lambda: cp.multiply.at(d, cp.asarray(np.array([0])), 2.0),
        lambda: cp.multiply.reduceat(d, [0]),
    ):
        with pytest.raises(NotImplementedError, match="is not supported yet"):
            unsupported()
    idx = cp.asarray(np.array([0, 0, 2]))
    ints = cp.zeros(3, dtype=cp.int64)
    with pytest.raises(TypeError, match="only supports int32.*got int64"):
        cp.add.at(ints, idx, 1)  # atomics: no int64 add on the GPU
    with pytest.raises(TypeError, match="only supports int32.*got int64"):
        cupyx.scatter_add(ints, idx, 1)
    cp.add.at(ints, slice(0, 2), 1)  # a basic index adds without atomics: any dtype
    cp.add.at(ints.astype(cp.int32), idx, 1)
    assert ints.get().tolist() == [1, 1, 0]


def test_the_stand_in_defines_nothing_cupy_lacks() -> None:
    import inspect
    import types

    from cuda_sim import cupy_api
    from cuda_sim.cupyx import profiler

    def param_names(params) -> set[str]:
        return {p.strip("*/").removeprefix("k:").split("=")[0] for p in params}

    scopes = [
        (vars(cp), cupy_api.CUPY),
        (vars(cp.ndarray), cupy_api.NDARRAY),
        (vars(type(cp.zeros(1).flags)), cupy_api.NDARRAY_FLAGS),
        (vars(cp.random), cupy_api.RANDOM),
        (vars(cp.random.Generator), cupy_api.RANDOM_GENERATOR),
        (vars(cp.random.RandomState), cupy_api.RANDOM_STATE),
        (vars(cp.testing), cupy_api.TESTING),
        (vars(cp.cuda), cupy_api.CUDA),
        (vars(cupyx), cupy_api.CUPYX),
        (vars(profiler), cupy_api.CUPYX_PROFILER),
    ]
    extra, too_lax = [], []
    for namespace, table in scopes:
        for name, value in namespace.items():
            if name.startswith("_") or name in ("annotations", "IS_CUDA_SIM"):
                continue
            if name not in table:
                extra.append(name)
            elif isinstance(value, types.FunctionType) and table[name][0] == "function":
                cupy_params = table[name][1]
                if not any(p.startswith("**") for p in cupy_params):
                    ours = set(inspect.signature(value).parameters) - {"self"}
                    if ours - param_names(cupy_params):
                        too_lax.append((name, sorted(ours - param_names(cupy_params))))
    assert not extra, f"the stand-in offers names CuPy {cupy_api.VERSION} lacks: {extra}"
    assert not too_lax, f"stand-in functions take parameters CuPy's lack: {too_lax}"


def test_flags_have_exactly_cupys_attributes() -> None:
    from cuda_sim import cupy_api

    a = cp.zeros((2, 3), dtype=cp.float32)
    public = {n for n in dir(a.flags) if not n.startswith("_")}
    assert public == set(cupy_api.NDARRAY_FLAGS) == {
        "c_contiguous", "f_contiguous", "owndata", "fnc", "forc"
    }  # fmt: skip
    assert (a.flags.c_contiguous, a.flags.f_contiguous, a.flags.owndata) == (True, False, True)
    assert (a.T.flags.fnc, a.T.flags.forc, a.T.flags.owndata) == (True, True, False)
    assert cp.broadcast_to(cp.zeros(3), (2, 3)).flags.owndata is False
    assert a.flags["C_CONTIGUOUS"] is True
    with pytest.raises(KeyError, match="WRITEABLE is not defined"):
        a.flags["WRITEABLE"]
    with pytest.raises(AttributeError):
        a.flags.c_contiguous = False  # read-only, as in CuPy


def test_empty_memory_reads_as_nan_also_0_d_and_fortran_order():
    assert np.isnan(cp.empty((), np.float32).get())
    assert np.isnan(cp.empty((3, 2), np.float64, order="F").get()).all()
