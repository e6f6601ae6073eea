"""The one way a RawKernel of ``kernels/cuda/*.cu`` is compiled, cached and launched.

Every kernel in those sources is a grid-stride loop whose parameters come in one order::

    kernel<T>(arrays..., long long total, int ints..., T scalars..., int flags...)
    kernel<T, A>(arrays..., long long total, int ints..., A scalars..., int flags...)

The second form (the sources of :data:`MIXED`: conv, pooling, optimizers, activations) also
runs in float16 and bfloat16: ``T`` is the storage type and ``A`` the type sums, scalars and
optimizer state are computed in, :data:`OPMATH` (float for the low dtypes, as PyTorch's
``opmath_type``). :func:`launch` packs the arguments in that order with the types the C
signature wants (CuPy passes a Python ``int`` as ``long long`` and a ``float`` as ``double``:
on a GPU a mismatch is silent garbage), computes the grid, and runs the launch under the
arrays' device. The module of each source is compiled once per CuPy module, for every template
instantiation of :func:`name_expressions`, and cached with its kernels. CuPy is imported
lazily, so ``import kernels.launch`` works without it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
# The one project header a source may include (device helpers several sources share). Its
# include line is replaced by the header's text (source_code), never resolved by the compiler:
# CuPy's kernel cache keys on the code string, which must change when the header does.
COMMON_HEADER = "tt_common.cuh"
_COMMON_INCLUDE = f'#include "{COMMON_HEADER}"'
# dtype name -> the C type the templates are instantiated for (the one place dtypes map to C
# types). float16 and bfloat16 are CUDA's __half and __nv_bfloat16 (cuda_fp16.h, cuda_bf16.h);
# bfloat16 arrays are ml_dtypes.bfloat16 on NumPy and on CuPy 14.
C_TYPES = {
    "float16": "__half",
    "bfloat16": "__nv_bfloat16",
    "float32": "float",
    "float64": "double",
}
# The dtype a kernel computes in for each storage dtype (PyTorch's opmath_type): sums are
# formed, scalars passed and optimizer state kept in float32 for float16/bfloat16.
OPMATH = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}
FLOAT_DTYPES = ("float32", "float64")
# Sources whose templates are <T, A> and instantiated for every dtype of C_TYPES; the others
# are <T> for FLOAT_DTYPES only.
MIXED = ("conv.cu", "pool.cu", "optim.cu", "activation.cu")
# Kernel templates per source file; each is instantiated for every type in C_TYPES.
KERNELS = {
    "conv.cu": ("im2col", "col2im"),
    "pool.cu": (
        "max_pool2d_forward",
        "max_pool2d_backward",
        "avg_pool2d_forward",
        "avg_pool2d_backward",
    ),
    "activation.cu": (
        "leaky_relu_forward",
        "leaky_relu_backward",
        "tanh_backward",
        "sigmoid_forward",
        "sigmoid_backward",
        "dropout_apply",
    ),
    "loss.cu": (
        "cross_entropy_forward",
        "cross_entropy_backward",
        "cross_entropy_reduce",
        "bce_logits_forward",
        "bce_logits_backward",
    ),
    "scatter.cu": ("segment_add",),
    "grad.cu": ("add_multi", "unscale_multi"),
    "norm.cu": (
        "batch_norm_partials",
        "batch_norm_forward",
        "batch_norm_backward_partials",
        "batch_norm_backward",
    ),
    "optim.cu": (
        "sgd_update",
        "momentum_update",
        "adam_update",
        "rmsprop_update",
        "adagrad_update",
        "adadelta_update",
        "sgd_update_multi",
        "adam_update_multi",
    ),
}
OPTIONS = ("--std=c++14",)
THREADS = 256
# Grid-stride loops cover whatever a capped grid leaves: 4,096 blocks of 256 threads is 1M
# threads, several times what any current card holds resident (an H100: 132 SMs x 2,048).
MAX_BLOCKS = 4096

# (id of the cupy module, source) -> RawModule; (id, source, name, dtype) -> kernel. Keyed by the
# module so that a CuPy stand-in swapped in by the tests never gets a kernel built by another.
_modules: dict[tuple[int, str], Any] = {}
_functions: dict[tuple[int, str, str, numpy.dtype], Any] = {}
_lock = threading.Lock()


def _cupy() -> Any:
    import cupy

    return cupy


def dtypes(source: str) -> tuple[str, ...]:
    """The dtype names the kernels of ``source`` are instantiated for."""
    return tuple(C_TYPES) if source in MIXED else FLOAT_DTYPES


def template_args(source: str, dtype_name: str) -> str:
    """``"float"`` (a ``<T>`` source) or ``"__half, float"`` (a ``<T, A>`` one)."""
    if source in MIXED:
        return f"{C_TYPES[dtype_name]}, {C_TYPES[OPMATH[dtype_name]]}"
    return C_TYPES[dtype_name]


def name_expressions(source: str) -> tuple[str, ...]:
    """The template instantiations compiled for one ``kernels/cuda`` source file."""
    return tuple(
        f"{k}<{template_args(source, d)}>" for k in KERNELS[source] for d in dtypes(source)
    )


def opmath(dtype: Any) -> numpy.dtype:
    """The dtype the kernels compute in for storage ``dtype`` (float32 for float16/bfloat16)."""
    name = numpy.dtype(dtype).name
    return numpy.dtype(OPMATH.get(name, name))


def c_type(dtype: Any, what: str, source: str) -> str:
    """The C type for a NumPy/CuPy dtype; TypeError naming the dtype when ``source``'s kernels
    have no instantiation for it."""
    name = numpy.dtype(dtype).name
    if name not in dtypes(source):
        raise TypeError(f"{what} support dtypes {dtypes(source)}, got {name}")
    return C_TYPES[name]


def source_code(source: str) -> str:
    """The text compiled for ``kernels/cuda/<source>`` (NVRTC, the host build and nvcc alike):
    the file with its ``#include "tt_common.cuh"`` line replaced by that header, between
    ``#line`` markers so that compiler messages name the right file and line."""
    text = (CUDA_DIR / source).read_text()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.split("//")[0].strip() == _COMMON_INCLUDE:
            header = (CUDA_DIR / COMMON_HEADER).read_text()
            lines[i] = f'#line 1 "{COMMON_HEADER}"\n{header}#line {i + 2} "{source}"'
            break
    return "\n".join(lines)


def kernel(source: str, name: str, dtype: Any) -> Any:
    """The compiled ``name<T>`` (or ``name<T, A>``) of ``kernels/cuda/<source>`` for ``dtype``,
    built once."""
    cupy = _cupy()
    # Looked up before anything is checked or formatted: this runs at every launch.
    key = (id(cupy), source, name, numpy.dtype(dtype))
    fn = _functions.get(key)
    if fn is None:
        c_type(dtype, f"{source} kernels", source)  # TypeError naming the dtype
        expr = f"{name}<{template_args(source, key[3].name)}>"
        with _lock:
            mod = _modules.get(key[:2])
            if mod is None:
                mod = _modules[key[:2]] = cupy.RawModule(
                    code=source_code(source),
                    options=OPTIONS,
                    name_expressions=name_expressions(source),
                )
            fn = _functions[key] = mod.get_function(expr)
    return fn


def blocks(total: int) -> int:
    """Blocks of :data:`THREADS` for a grid-stride loop over ``total`` elements (>= 1)."""
    return max(1, min(-(-total // THREADS), MAX_BLOCKS))


def pack(
    arrays: Sequence[Any],
    total: int,
    ints: Sequence[int] = (),
    scalars: Sequence[float] = (),
    flags: Sequence[bool] = (),
    dtype: Any = None,
) -> tuple:
    """The argument tuple ``(arrays..., long long total, int..., A..., int flags...)`` with A
    the compute dtype :func:`opmath` of ``dtype`` (default: the first array's): float32 scalars
    for float16/bfloat16 (an eps of 1e-8 is 0 in float16). Arrays must be C-contiguous (a
    RawKernel ignores strides)."""
    t = opmath(dtype if dtype is not None else arrays[0].dtype).type
    return (
        *arrays,
        numpy.int64(total),
        *(numpy.int32(v) for v in ints),
        *(t(v) for v in scalars),
        *(numpy.int32(bool(f)) for f in flags),
    )


def launch(
    source: str,
    name: str,
    arrays: Sequence[Any],
    total: int,
    ints: Sequence[int] = (),
    scalars: Sequence[float] = (),
    flags: Sequence[bool] = (),
    dtype: Any = None,
) -> None:
    """Run ``name<T>`` of ``source`` (T: ``dtype``, default the first array's) over ``total``
    elements, on the first array's device. Nothing is launched for an empty range (an empty
    grid would still launch one block)."""
    if total <= 0:
        return
    first = arrays[0]
    fn = kernel(source, name, first.dtype if dtype is None else dtype)
    with first.device:
        fn((blocks(total),), (THREADS,), pack(arrays, total, ints, scalars, flags, dtype))


def check_group(arrays: Sequence[Any], name: str, what: str) -> None:
    """Raise ValueError unless every array is C-contiguous, of ``arrays[0]``'s dtype and on its
    device: what a multi-tensor kernel's one address table and one dtype need. ``name`` is the
    kernel, ``what`` an array's role ("parameter", "gradient") for the message."""
    first = arrays[0]
    for k, a in enumerate(arrays):
        if a.dtype != first.dtype or not a.flags.c_contiguous or a.device != first.device:
            raise ValueError(
                f"{name}: {what} {k} ({a.dtype.name}{tuple(a.shape)}) is not a C-contiguous "
                f"{first.dtype.name} array on device {first.device.id} like {what} 0"
            )


def address_tables(lists: Sequence[Sequence[Any]], zeros: int = 0) -> tuple[list[Any], int]:
    """Per list of arrays a device table of their addresses (None for a list whose first entry
    is None: state an update does not use), then the int64 offsets of ``lists[0]``'s arrays
    (count + 1, from 0), then (when ``zeros``) that many zeroed 64-bit words (a kernel's flags),
    all built on the host and copied in one copy to the device of ``lists[0][0]``; and the
    total element count of ``lists[0]``. For the multi-tensor kernels (``tables..., offsets,
    total, count, ...``)."""
    cp = _cupy()
    count = len(lists[0])
    used = [t for t in lists if t[0] is not None]
    offsets = numpy.cumsum([0] + [a.size for a in lists[0]], dtype=numpy.int64)
    end = count * len(used) + count + 1
    host = numpy.zeros(end + zeros, numpy.uint64)
    for k, t in enumerate(used):
        host[k * count : (k + 1) * count] = [a.data.ptr for a in t]
    host[count * len(used) : end] = offsets.view(numpy.uint64)
    with lists[0][0].device:
        table = cp.asarray(host)  # the one copy to the device
    slots = iter(range(0, count * len(used), count))
    views = [None if t[0] is None else table[(k := next(slots)) : k + count] for t in lists]
    views.append(table[count * len(used) : end].view(cp.int64))
    if zeros:
        views.append(table[end:])
    return views, int(offsets[-1])
