"""The one way a RawKernel of ``kernels/cuda/*.cu`` is compiled, cached and launched.

Every kernel in those sources is a ``template <typename T>`` grid-stride loop whose parameters
come in one order::

    kernel<T>(arrays..., long long total, int ints..., T scalars..., int flags...)

:func:`launch` packs the arguments in that order with the types the C signature wants (CuPy
passes a Python ``int`` as ``long long`` and a ``float`` as ``double``: on a GPU a mismatch is
silent garbage), computes the grid, and runs the launch under the arrays' device. The module of
each source is compiled once per CuPy module, for every template instantiation in
:data:`KERNELS` (float and double), and cached with its kernels. CuPy is imported lazily, so
``import kernels.launch`` works without it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
# NumPy dtype name -> the C type the templates are instantiated for.
C_TYPES = {"float32": "float", "float64": "double"}
FLOAT_DTYPES = tuple(C_TYPES)
# Kernel templates per source file; each is instantiated for every type in C_TYPES.
KERNELS = {
    "conv.cu": ("im2col", "col2im"),
    "pool.cu": (
        "max_pool2d_forward",
        "max_pool2d_backward",
        "avg_pool2d_forward",
        "avg_pool2d_backward",
    ),
    "activation.cu": ("leaky_relu_forward", "leaky_relu_backward"),
    "loss.cu": (
        "cross_entropy_forward",
        "cross_entropy_backward",
        "bce_logits_forward",
        "bce_logits_backward",
    ),
    "scatter.cu": ("segment_add",),
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

# (id of the cupy module, source) -> RawModule; (id, source, expression) -> kernel. Keyed by the
# module so that a CuPy stand-in swapped in by the tests never gets a kernel built by another.
_modules: dict[tuple[int, str], Any] = {}
_functions: dict[tuple[int, str, str], Any] = {}
_lock = threading.Lock()


def _cupy() -> Any:
    import cupy

    return cupy


def name_expressions(source: str) -> tuple[str, ...]:
    """The template instantiations compiled for one ``kernels/cuda`` source file."""
    return tuple(f"{k}<{t}>" for k in KERNELS[source] for t in C_TYPES.values())


def c_type(dtype: Any, what: str = "CUDA kernels") -> str:
    """The C type for a NumPy/CuPy dtype; TypeError naming the dtype when there is none."""
    name = numpy.dtype(dtype).name
    ctype = C_TYPES.get(name)
    if ctype is None:
        raise TypeError(f"{what} support dtypes {FLOAT_DTYPES}, got {name}")
    return ctype


def kernel(source: str, name: str, dtype: Any) -> Any:
    """The compiled ``name<T>`` of ``kernels/cuda/<source>`` for ``dtype``, built once."""
    cupy = _cupy()
    expr = f"{name}<{c_type(dtype)}>"
    key = (id(cupy), source, expr)
    fn = _functions.get(key)
    if fn is None:
        with _lock:
            mod = _modules.get(key[:2])
            if mod is None:
                mod = _modules[key[:2]] = cupy.RawModule(
                    code=(CUDA_DIR / source).read_text(),
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
    """The argument tuple ``(arrays..., long long total, int..., T..., int flags...)`` with T
    ``dtype`` (default: the first array's). Arrays must be C-contiguous (a RawKernel ignores
    strides)."""
    t = numpy.dtype(dtype).type if dtype is not None else arrays[0].dtype.type
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
