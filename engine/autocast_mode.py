"""`engine.autocast`: PyTorch's automatic mixed precision, per thread and per device type.

Inside `with engine.autocast("cuda", dtype=engine.float16):` the ops on the lists below cast their
floating inputs at entry, as torch.autocast does: the "lower" ops (matrix products and
convolutions, which tensor cores run) to the autocast dtype, the "float32" ops (losses, and on
cuda also softmax, exp/log, sums, norms) to float32. float64 tensors are never cast. Every other op
runs in its inputs' dtype, with the engine's usual promotion (bfloat16 + float32 -> float32).

The cast is the differentiable `astype` op, so a float32 parameter used by a float16 matmul gets
its gradient in float32. The lists are PyTorch's (torch/csrc/autograd/autocast_mode.cpp and its
"Autocast Op Reference"), one per device type: PyTorch's CPU autocast keeps softmax, exp and sums
in the low dtype, its CUDA autocast runs them in float32.

Autocast is off while the tape runs backward (PyTorch's backward is not autocast either): the
gradient ops run in the dtypes their forward ops ran in. It is off inside an op too, once the op
has cast its inputs (PyTorch's autocast kernel excludes its dispatch key below it): an op built
of other ops (mean as sum / n, elu of exp, interpolate of matmuls) must not have those cast
again, or a float16 mean would come out float32 on cuda and a float32 interpolate bfloat16.
`autocast_op` wraps the listed ops; `native_op` wraps the composites that are one native op in
PyTorch but no list's (they run in their inputs' dtype, whatever they call inside).
"""

from __future__ import annotations

import functools
import threading

import numpy

from .dtypes import BFLOAT16, FLOAT16, as_dtype, kind
from .grad_mode import _mode

__all__ = ["autocast", "is_autocast_enabled", "get_autocast_dtype", "cast_inputs"]

_FLOAT32 = numpy.dtype(numpy.float32)

#: Ops that run in the autocast dtype (both device types).
#: einsum is on no list, but PyTorch's is a composite of bmm, so it comes out low too;
#: scaled_dot_product_attention is on both of torch 2.x's lists.
LOWER = frozenset(
    {"matmul", "linear", "bmm", "baddbmm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
     "conv_transpose2d", "conv_transpose3d", "prelu", "einsum", "scaled_dot_product_attention"}
)  # fmt: skip
#: Ops that run in float32, by device type (PyTorch's CPU and CUDA lists).
_LOSSES = {
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "nll_loss", "cross_entropy", "kl_div",
    "binary_cross_entropy_with_logits", "poisson_nll_loss",
    "cosine_embedding_loss", "hinge_embedding_loss", "margin_ranking_loss", "soft_margin_loss",
    "triplet_margin_loss", "multi_margin_loss", "multilabel_margin_loss",
}  # fmt: skip
FLOAT32 = {
    # The CPU list's pooling and padding entries (3-d pools, unpooling, reflect/replicate pads):
    # PyTorch's CPU kernels for them have no bfloat16/float16 fast path.
    "cpu": frozenset(
        _LOSSES
        | {"binary_cross_entropy", "prod", "cdist", "max_pool3d", "avg_pool3d",
           "adaptive_avg_pool3d", "adaptive_max_pool3d", "max_unpool2d", "max_unpool3d",
           "reflection_pad", "replication_pad", "trace"}
    ),
    "cuda": frozenset(
        _LOSSES
        | {"exp", "expm1", "log", "log1p", "log2", "log10", "pow", "reciprocal", "rsqrt",
           "sinh", "cosh", "tan", "acos", "asin", "erfinv", "softplus", "softmax", "log_softmax",
           "softmin", "layer_norm", "group_norm", "norm", "normalize", "cosine_similarity",
           "sum", "prod", "cumsum", "cumprod", "logsumexp", "dist", "cdist", "renorm",
           "linalg_vector_norm", "linalg_matrix_norm", "pdist"}
    ),
}  # fmt: skip
#: Ops PyTorch refuses under CUDA autocast (their float16 gradients overflow).
UNSAFE = {"cuda": frozenset({"binary_cross_entropy"}), "cpu": frozenset()}
_LOW = {"cpu": BFLOAT16, "cuda": FLOAT16}  # PyTorch's default autocast dtype per device type


class _State(threading.local):
    def __init__(self):
        self.dtype = {"cpu": None, "cuda": None}  # None: autocast off for that device type
        self.inside_op = 0  # > 0 while an autocast op's body runs: its inner ops are not cast
        self.depth = 0  # autocast regions entered and not exited (enabled or not)
        # The weight-cast cache: (id(leaf), dtype, grad mode) -> (leaf, its array, its version,
        # the cast); emptied when the outermost region exits.
        self.casts: dict = {}

    def active(self) -> bool:
        return (
            not _mode.backward_depth
            and not self.inside_op
            and (self.dtype["cpu"] is not None or self.dtype["cuda"] is not None)
        )


_state = _State()


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    return _state.dtype[_check_device_type(device_type)] is not None


def get_autocast_dtype(device_type: str = "cuda") -> numpy.dtype:
    dt = _state.dtype[_check_device_type(device_type)]
    return dt if dt is not None else _LOW[device_type]


def _check_device_type(device_type: str) -> str:
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"autocast: device_type must be 'cpu' or 'cuda', got {device_type!r}")
    return device_type


class autocast:  # noqa: N801  (PyTorch's name)
    """`with engine.autocast("cuda"):` / `@engine.autocast("cpu", dtype=engine.bfloat16)`.

    dtype: float16 or bfloat16 (default: float16 on cuda, bfloat16 on cpu, as PyTorch).
    enabled=False turns autocast off inside an enclosing region; regions nest and restore the
    enclosing state on exit.
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True):
        self.device_type = _check_device_type(device_type)
        self.dtype = _LOW[device_type] if dtype is None else as_dtype(dtype)
        if self.dtype not in (FLOAT16, BFLOAT16):
            raise ValueError(
                f"autocast: dtype must be engine.float16 or engine.bfloat16, got {self.dtype}"
            )
        self.enabled = bool(enabled)
        self._saved: list = []

    def __enter__(self) -> autocast:
        self._saved.append(_state.dtype[self.device_type])
        _state.dtype[self.device_type] = self.dtype if self.enabled else None
        _state.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        _state.dtype[self.device_type] = self._saved.pop()
        _state.depth -= 1
        if not _state.depth:  # PyTorch's clear_autocast_cache at the outermost exit
            _state.casts.clear()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)

        return wrapper


def is_active() -> bool:
    """Whether any autocast region is on (and no backward walk runs): an op on the kernel's
    hot path asks this inline instead of wearing the `autocast_op` wrapper frame."""
    return _state.active()


def cast_inputs(op: str, *xs):
    """`xs` as the op `op` takes them under the current autocast state (unchanged when autocast
    is off for their device type, or the op is on no list). Non-tensors pass through."""
    if not _state.active():
        return xs
    ref = next((x for x in xs if hasattr(x, "device") and hasattr(x, "dtype")), None)
    if ref is None:
        return xs
    device_type = ref.device.type
    low = _state.dtype[device_type]
    if low is None:
        return xs
    if op in LOWER:
        target = low
    elif op in FLOAT32[device_type]:
        target = _FLOAT32
    elif op in UNSAFE[device_type]:
        raise RuntimeError(
            f"{op} is unsafe to autocast (PyTorch refuses it too): use "
            "binary_cross_entropy_with_logits, or compute it outside autocast in float32"
        )
    else:
        return xs
    if target is low:
        return tuple(_cast_weight(x, target) for x in xs)
    return tuple(_cast(x, target, _differentiable_cast) for x in xs)


def _differentiable_cast(x, dtype):
    """engine.ops.shape.astype, which registers itself here (shape imports this module)."""
    raise RuntimeError("engine.ops.shape did not register its astype")


def _cast_weight(x, target):
    """`_cast(x, target)`, through the region's cache when x is a float32 leaf that requires
    grad (PyTorch caches exactly those: the parameters; activations change with every op)."""
    if not (getattr(x, "requires_grad", False) and x.grad_fn is None and x.dtype == _FLOAT32):
        return _cast(x, target, _differentiable_cast)
    grad_on = _mode.grad_enabled
    key = (id(x), target, grad_on)
    entry = _state.casts.get(key)
    if entry is not None:
        leaf, array, version, cast = entry
        fn = cast.grad_fn
        if (
            leaf is x
            and array is x.array
            and version == x._version[0]
            and not (fn is not None and getattr(fn, "_freed", False))
        ):
            return cast
    cast = _differentiable_cast(x, target)
    _state.casts[key] = (x, x.array, x._version[0], cast)
    return cast


def _cast(x, target, astype):
    if not (hasattr(x, "dtype") and hasattr(x, "device")) or x.dtype == target:
        return x
    dt = numpy.dtype(x.dtype)
    if kind(dt) != "f" or dt == numpy.float64:  # PyTorch casts only float16/32 and bfloat16
        return x
    return astype(x, target)


def autocast_op(name: str):
    """Decorator of an op on the autocast lists: its tensor arguments (positional or keyword)
    are cast by `cast_inputs(name, ...)` at entry. Costs one attribute read when autocast is off."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _state.active():
                return fn(*args, **kwargs)
            args = cast_inputs(name, *args)
            if kwargs:
                keys = list(kwargs)
                kwargs = dict(zip(keys, cast_inputs(name, *kwargs.values()), strict=True))
            return _uncast_call(fn, args, kwargs)

        return wrapper

    return decorate


def native_op(fn):
    """Decorator of a composite op that PyTorch runs as one native kernel on no autocast list:
    under autocast it runs in its inputs' dtype, its inner ops uncast."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not _state.active():
            return fn(*args, **kwargs)
        return _uncast_call(fn, args, kwargs)

    return wrapper


def _uncast_call(fn, args, kwargs):
    _state.inside_op += 1
    try:
        return fn(*args, **kwargs)
    finally:
        _state.inside_op -= 1
