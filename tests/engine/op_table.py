"""The table of every public op: one row per op, with a callable and a random-input generator.

`tests/engine/test_inputs_unchanged.py` runs each row forward and backward on both devices and
checks that no input (nor the gradient handed to backward) changed, bit for bit. Its coverage
test fails when a public op of `engine`, `engine.functional` or a `Tensor` method has no row,
so a new op cannot be forgotten.

To add an op, append a row:

    Op(("engine.cumsum", "Tensor.cumsum"), lambda op, x: op(x, x.ndim - 1), floats(min_ndim=1))

- `names`: the public names the row covers, `engine.X`, `F.X` (engine.functional), `linalg.X`
  (engine.linalg) or `Tensor.X` (called unbound, `Tensor.X(x, ...)`); each name is resolved
  and called in turn (names that resolve to the same object run once).
- `call(op, *tensors)`: calls the resolved op on the generated inputs; fixed arguments (a dim,
  a kernel size) are written here, derived from the inputs' shapes where they vary.
- `inputs(rng)`: a list of NumPy arrays. Float arrays become float32 tensors (requiring grad in
  the backward pass), integer and bool arrays tensors without grad. Draw shapes with `shape()`,
  which mixes in size-1 dimensions.
- `grad=False` for ops without a gradient (comparisons, argmax, ...): forward only;
  `create_graph=False` where double backward is not supported (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import engine


@dataclass(frozen=True)
class Op:
    names: tuple[str, ...]
    call: Callable
    inputs: Callable[[np.random.Generator], list]
    grad: bool = True
    create_graph: bool = True  # False where double backward raises by design (said in its error)


# Input generators ----------------------------------------------------------------------------
def shape(rng, min_ndim: int = 0, max_ndim: int = 3, sides=(1, 1, 2, 3)) -> tuple:
    """A random shape whose sides favour 1 (the broadcasting and squeezing corner cases)."""
    return tuple(int(rng.choice(sides)) for _ in range(rng.integers(min_ndim, max_ndim + 1)))


def _normal(rng, s):
    return rng.standard_normal(s)


def floats(n: int = 1, min_ndim: int = 0, max_ndim: int = 3, low=None, high=None):
    """`n` float arrays of one random shape (normal, or uniform in [low, high))."""

    def gen(rng):
        s = shape(rng, min_ndim, max_ndim)
        if low is None:
            return [_normal(rng, s) for _ in range(n)]
        return [rng.uniform(low, high, s) for _ in range(n)]

    return gen


def broadcasting(n: int = 2, max_ndim: int = 3, low=None, high=None):
    """`n` float arrays of mutually broadcastable random shapes (size-1 sides, fewer dims)."""

    def gen(rng):
        full = shape(rng, 0, max_ndim)
        out = []
        for _ in range(n):
            lead = int(rng.integers(0, len(full) + 1))
            s = tuple(1 if rng.random() < 0.3 else d for d in full[lead:])
            out.append(_normal(rng, s) if low is None else rng.uniform(low, high, s))
        return out

    return gen


def fixed(*arrays_fn):
    """Inputs of fixed structure: each argument is `fn(rng) -> array`."""
    return lambda rng: [fn(rng) for fn in arrays_fn]


def images(rng, channels=None, min_hw=1, max_hw=4):
    """(N, C, H, W) floats, N and C mostly 1 (a single image's window views can be contiguous,
    which is how max_pool2d once wrote into its input), H and W in [min_hw, max_hw]."""
    c = channels if channels is not None else int(rng.choice((1, 1, 2)))
    h, w = (int(rng.integers(min_hw, max_hw + 1)) for _ in range(2))
    return _normal(rng, (int(rng.choice((1, 1, 2))), c, h, w))


def _batched_matrices(rng):
    """(B, 1, M, 3) and (B', 3, N): matmul's batch broadcasting with size-1 sides."""
    return [
        _normal(rng, (int(rng.integers(1, 3)), 1, int(rng.integers(1, 4)), 3)),
        _normal(rng, (1, 3, int(rng.integers(1, 3)))),
    ]


def _where_inputs(rng):
    """A bool condition, a same-shape and a broadcasting float operand."""
    s = shape(rng)
    return [rng.random(s) < 0.5, _normal(rng, s), _normal(rng, s[1:])]


def _last(x):
    return max(x.ndim - 1, 0)


def _perm(x):
    return tuple(reversed(range(x.ndim)))


# The rows ------------------------------------------------------------------------------------
E, T = "engine.", "Tensor."


def _names(*names):
    return tuple(names)


def unary(name, in_engine=True, tensor=True, functional=False, low=None, high=None, grad=True):
    names = ((E + name,) if in_engine else ()) + ((T + name,) if tensor else ())
    names += ("F." + name,) if functional else ()
    return Op(names, lambda op, x: op(x), floats(low=low, high=high), grad)


def _ints(low, high, shape_fn):
    return lambda rng: rng.integers(low, high, shape_fn(rng))


def _gather_inputs(rng):
    """x (A, B) and an index along dim 1 of shape (A, K) with entries in [0, B)."""
    a, b, k = (int(rng.integers(1, 4)) for _ in range(3))
    return [_normal(rng, (a, b)), rng.integers(0, b, (a, k))]


def _scatter_inputs(rng):
    """x (A, B), an index (A, K) along dim 1 and a source (A, K)."""
    a, b, k = (int(rng.integers(1, 4)) for _ in range(3))
    return [_normal(rng, (a, b)), rng.integers(0, b, (a, k)), _normal(rng, (a, k))]


def _masked_inputs(rng):
    s = shape(rng)
    return [_normal(rng, s), rng.random(s) < 0.5]


def _matrix(rng):
    return [_normal(rng, (int(rng.integers(1, 4)), int(rng.integers(1, 4))))]


def _bools(n):
    return lambda rng: [rng.random(s) < 0.5 for s in [shape(rng)] * n]


def _int32s(n):
    return lambda rng: [rng.integers(-8, 8, s).astype(np.int32) for s in [shape(rng)] * n]


OPS: list[Op] = [
    # Elementwise unary -----------------------------------------------------------------------
    unary("exp"),
    unary("log", low=0.1, high=3.0),
    unary("log1p", low=-0.9, high=3.0),
    unary("sqrt", low=0.1, high=3.0),
    unary("rsqrt", low=0.1, high=3.0),
    unary("abs"),
    unary("sin"),
    unary("cos"),
    unary("tanh", functional=True),
    unary("sigmoid", functional=True),
    unary("relu", functional=True),
    unary("square"),
    unary("sign", grad=False),
    unary("erf"),
    unary("neg"),
    unary("isfinite", grad=False),
    unary("isnan", grad=False),
    Op(
        _names(E + "clip", T + "clip", E + "clamp", T + "clamp"),
        lambda op, x: op(x, -0.5, 0.5),
        floats(),
    ),
    Op(_names(T + "__neg__"), lambda op, x: op(x), floats()),
    Op(_names(T + "__pos__"), lambda op, x: op(x), floats()),
    Op(_names(T + "__abs__"), lambda op, x: op(x), floats()),
    Op(
        _names(T + "__invert__"),
        lambda op, x: op(x),
        lambda rng: [rng.random(shape(rng)) < 0.5],
        grad=False,
    ),
    # Elementwise binary ----------------------------------------------------------------------
    Op(
        _names(
            E + "add",
            T + "add",
            E + "sub",
            T + "sub",
            E + "mul",
            T + "mul",
            E + "maximum",
            T + "maximum",
            E + "minimum",
            T + "minimum",
            T + "__add__",
            T + "__radd__",
            T + "__sub__",
            T + "__rsub__",
            T + "__mul__",
            T + "__rmul__",
        ),
        lambda op, a, b: op(a, b),
        broadcasting(),
    ),
    Op(
        _names(E + "div", T + "div", T + "__truediv__", T + "__rtruediv__"),
        lambda op, a, b: op(a, b * b + 0.5),
        broadcasting(),
    ),
    Op(
        _names(
            E + "add",
            T + "add",
            E + "sub",
            T + "sub",
            E + "mul",
            T + "mul",
            E + "div",
            T + "div",
            E + "maximum",
            T + "maximum",
            E + "minimum",
            T + "minimum",
            T + "__add__",
            T + "__radd__",
            T + "__sub__",
            T + "__rsub__",
            T + "__mul__",
            T + "__rmul__",
            T + "__truediv__",
            T + "__rtruediv__",
            T + "__pow__",
        ),
        lambda op, a: op(a, 1.5),
        floats(low=0.5, high=2.0),
    ),
    Op(
        _names(E + "div", T + "div"),
        lambda op, a, b: op(a, b * b + 0.5, rounding_mode="trunc"),
        broadcasting(),
    ),
    Op(
        _names(E + "pow", T + "pow", T + "__pow__", T + "__rpow__"),
        lambda op, a, b: op(a, b),
        broadcasting(low=0.5, high=2.0),
    ),
    Op(_names(E + "pow", T + "pow", T + "__pow__"), lambda op, a: op(a, 2), floats()),
    Op(_names(T + "__rpow__"), lambda op, a: op(a, 2.0), floats()),
    Op(
        _names(
            T + "__lt__",
            T + "__le__",
            T + "__gt__",
            T + "__ge__",
            T + "__eq__",
            T + "__ne__",
            T + "__mod__",
            T + "__rmod__",
            T + "__floordiv__",
            T + "__rfloordiv__",
        ),
        lambda op, a, b: op(a, b * b + 0.5),
        broadcasting(),
        grad=False,
    ),
    Op(
        _names(T + "__and__", T + "__or__"),
        lambda op, a, b: op(a, b),
        lambda rng: [rng.random(s) < 0.5 for s in [shape(rng)] * 2],
        grad=False,
    ),
    Op(_names(E + "lerp", T + "lerp"), lambda op, a, b, w: op(a, b, w), broadcasting(3)),
    Op(
        _names(E + "where"),
        lambda op, c, a, b: op(c, a, b),
        _where_inputs,
    ),
    # Reductions ------------------------------------------------------------------------------
    Op(
        _names(
            E + "sum",
            T + "sum",
            E + "mean",
            T + "mean",
            E + "prod",
            T + "prod",
            E + "max",
            T + "max",
            E + "min",
            T + "min",
            E + "amax",
            T + "amax",
            E + "amin",
            T + "amin",
            E + "logsumexp",
            T + "logsumexp",
            E + "norm",
            T + "norm",
            E + "var",
            T + "var",
            E + "std",
            T + "std",
        ),
        lambda op, x: op(x),
        floats(min_ndim=1),
    ),
    Op(
        _names(
            E + "sum",
            T + "sum",
            E + "mean",
            T + "mean",
            E + "prod",
            T + "prod",
            E + "max",
            T + "max",
            E + "min",
            T + "min",
            E + "amax",
            T + "amax",
            E + "amin",
            T + "amin",
            E + "logsumexp",
            T + "logsumexp",
            E + "var",
            T + "var",
            E + "std",
            T + "std",
        ),
        lambda op, x: op(x, _last(x), keepdim=True),
        floats(min_ndim=1),
    ),
    Op(
        _names(E + "norm", T + "norm"),
        lambda op, x: op(x, 2, _last(x), keepdim=True),
        floats(min_ndim=1),
    ),
    Op(_names(E + "norm", T + "norm"), lambda op, x: op(x, 3, _last(x)), floats(min_ndim=1)),
    Op(_names(E + "norm", T + "norm"), lambda op, x: op(x, 1), floats()),
    Op(
        _names(E + "argmax", T + "argmax", E + "argmin", T + "argmin"),
        lambda op, x: op(x, _last(x)),
        floats(min_ndim=1),
        grad=False,
    ),
    # Matrix products -------------------------------------------------------------------------
    Op(
        _names(E + "matmul", T + "matmul", T + "__matmul__", "F.matmul"),
        lambda op, a, b: op(a, b),
        _batched_matrices,
    ),
    Op(_names(T + "__rmatmul__"), lambda op, a, b: op(b, a), _batched_matrices),
    Op(
        _names(E + "matmul"),
        lambda op, a, b: op(a, b),
        lambda rng: [_normal(rng, (3,)), _normal(rng, (3, int(rng.integers(1, 3))))],
    ),
    Op(
        _names(E + "linear", "F.linear"),
        lambda op, x, w, b: op(x, w, b),
        lambda rng: [
            _normal(rng, shape(rng, 0, 2) + (3,)),
            _normal(rng, (2, 3)),
            _normal(rng, (2,)),
        ],
    ),
    # Shapes ----------------------------------------------------------------------------------
    Op(
        _names(E + "reshape", T + "reshape", E + "view", T + "view"),
        lambda op, x: op(x, (-1,)),
        floats(),
    ),
    Op(_names(T + "reshape_as", T + "view_as"), lambda op, x, y: op(x, y.reshape(-1)), floats(2)),
    Op(_names(E + "flatten", T + "flatten"), lambda op, x: op(x), floats()),
    Op(
        _names(E + "unflatten", T + "unflatten"),
        lambda op, x: op(x, 0, (1, x.shape[0])),
        floats(min_ndim=1),
    ),
    Op(_names(E + "squeeze", T + "squeeze"), lambda op, x: op(x), floats()),
    Op(_names(E + "squeeze", T + "squeeze"), lambda op, x: op(x, 0), floats(min_ndim=1)),
    Op(_names(E + "unsqueeze", T + "unsqueeze"), lambda op, x: op(x, -1), floats()),
    Op(_names(E + "permute", T + "permute"), lambda op, x: op(x, *_perm(x)), floats()),
    Op(_names(T + "T"), lambda op, x: op(x), floats()),
    Op(_names(T + "mT"), lambda op, x: op(x), floats(min_ndim=2)),
    Op(_names(E + "transpose", T + "transpose"), lambda op, x: op(x, 0, -1), floats(min_ndim=2)),
    Op(_names(E + "t", T + "t"), lambda op, x: op(x), floats(min_ndim=2, max_ndim=2)),
    Op(_names(E + "expand", T + "expand"), lambda op, x: op(x, 2, *x.shape), floats()),
    Op(
        _names(E + "broadcast_to", T + "broadcast_to"),
        lambda op, x: op(x, (2,) + x.shape),
        floats(),
    ),
    Op(
        _names(E + "expand_as", T + "expand_as"),
        lambda op, x, y: op(x, y),
        lambda rng: [_normal(rng, (1, 3)), _normal(rng, (2, 3))],
    ),
    Op(_names(E + "sum_to", T + "sum_to"), lambda op, x: op(x, (1,) * x.ndim), floats()),
    Op(_names(E + "repeat", T + "repeat"), lambda op, x: op(x, *((2,) * max(x.ndim, 1))), floats()),
    Op(_names(E + "tile", T + "tile"), lambda op, x: op(x, (2,)), floats()),
    Op(_names(E + "flip", T + "flip"), lambda op, x: op(x, (0,)), floats(min_ndim=1)),
    Op(
        _names(E + "getitem", T + "__getitem__"),
        lambda op, x: op(x, (slice(None, None, 2),)),
        floats(min_ndim=1),
    ),
    Op(
        _names(E + "getitem", T + "__getitem__"),
        lambda op, x, i: op(x, i),
        lambda rng: [_normal(rng, (3,) + shape(rng, 0, 2)), rng.integers(0, 3, shape(rng, 0, 2))],
    ),
    Op(
        _names(E + "getitem", T + "__getitem__"),
        lambda op, x, m: op(x, m),
        lambda rng: [_normal(rng, s := shape(rng, 1, 3)), rng.random(s) < 0.5],
    ),
    Op(_names(E + "split", T + "split"), lambda op, x: op(x, 1, 0), floats(min_ndim=1)),
    Op(_names(E + "chunk", T + "chunk"), lambda op, x: op(x, 2, -1), floats(min_ndim=1)),
    Op(_names(E + "unbind", T + "unbind"), lambda op, x: op(x, 0), floats(min_ndim=1)),
    Op(
        _names(E + "cat", E + "concat"),
        lambda op, a, b: op([a, b], -1),
        lambda rng: [_normal(rng, s := shape(rng, 1, 3)), _normal(rng, s[:-1] + (2,))],
    ),
    Op(_names(E + "stack"), lambda op, a, b: op([a, b], 0), floats(2)),
    Op(_names(E + "pad", "F.pad"), lambda op, x: op(x, (1, 2)), floats(min_ndim=1)),
    Op(
        _names(E + "pad", "F.pad"),
        lambda op, x: op(x, (-1, 1)),
        lambda rng: [_normal(rng, shape(rng, 0, 2) + (3,))],
    ),
    Op(
        _names(E + "pad", "F.pad"),
        lambda op, x: op(x, (1, 1), mode="reflect"),
        lambda rng: [_normal(rng, shape(rng, 1, 2) + (2,))],
    ),
    Op(
        _names(E + "pad", "F.pad"),
        lambda op, x: op(x, (2, 1), mode="replicate"),
        floats(min_ndim=2),
    ),
    Op(
        _names(E + "pad", "F.pad"),
        lambda op, x: op(x, (1, 2), mode="circular"),
        lambda rng: [_normal(rng, shape(rng, 1, 2) + (3,))],
    ),
    # Copies and conversions ------------------------------------------------------------------
    Op(
        _names(
            E + "clone",
            T + "clone",
            T + "detach",
            T + "contiguous",
            T + "float",
            T + "double",
            T + "half",
            T + "cpu",
            T + "cuda",
        ),
        lambda op, x: op(x),
        floats(),
    ),
    Op(_names(T + "long", T + "int", T + "bool"), lambda op, x: op(x), floats(), grad=False),
    Op(
        _names(
            E + "zeros_like", E + "ones_like", E + "empty_like", E + "rand_like", E + "randn_like"
        ),
        lambda op, x: op(x),
        floats(),
        grad=False,
    ),
    Op(_names(E + "full_like"), lambda op, x: op(x, 2.0), floats(), grad=False),
    Op(_names(E + "astype"), lambda op, x: op(x, np.float64), floats()),
    Op(_names(T + "to"), lambda op, x: op(x, "float64"), floats()),
    Op(_names(T + "type_as"), lambda op, x, y: op(x, y.double()), floats(2)),
    Op(_names(E + "to_device"), lambda op, x: op(x, engine.device("cpu")), floats()),
    Op(_names(E + "as_tensor"), lambda op, x: op(x, dtype="float64"), floats()),
    # engine.functional: activations, softmax, normalisation ---------------------------------
    Op(
        _names("F.leaky_relu", "F.elu", "F.gelu", "F.silu", "F.hardtanh", "F.relu6", "F.softplus"),
        lambda op, x: op(x),
        floats(),
    ),
    Op(
        _names(
            "F.logsigmoid",
            "F.hardsigmoid",
            "F.hardswish",
            "F.mish",
            "F.selu",
            "F.celu",
            "F.softsign",
        ),
        lambda op, x: op(x),
        floats(),
    ),
    Op(
        _names("F.glu"),
        lambda op, x: op(x, -1),
        lambda rng: [_normal(rng, shape(rng, 0, 2) + (2 * int(rng.integers(1, 3)),))],
    ),
    Op(
        _names("F.prelu"),
        lambda op, x, w: op(x, w),
        lambda rng: [
            _normal(rng, (int(rng.integers(1, 3)), 2) + shape(rng, 0, 2)),
            _normal(rng, (int(rng.choice((1, 2))),)),
        ],
    ),
    Op(_names("F.leaky_relu"), lambda op, x: op(x, 1.5), floats()),
    Op(_names("F.gelu"), lambda op, x: op(x, approximate="tanh"), floats()),
    Op(
        _names("F.softmax", "F.log_softmax", "F.logsumexp"),
        lambda op, x: op(x, -1),
        floats(min_ndim=1),
    ),
    Op(_names("F.normalize"), lambda op, x: op(x, 2.0, -1), floats(min_ndim=1)),
    Op(_names("F.cosine_similarity"), lambda op, a, b: op(a, b, -1), floats(2, min_ndim=1)),
    Op(_names("F.dropout"), lambda op, x: op(x, 0.5), floats()),
    Op(_names("F.dropout2d"), lambda op, x: op(x, 0.5), lambda rng: [images(rng)]),
    # engine.functional: losses ---------------------------------------------------------------
    Op(
        _names("F.mse_loss", "F.l1_loss", "F.smooth_l1_loss", "F.kl_div"),
        lambda op, a, b: op(a, b),
        floats(2),
    ),
    Op(_names("F.binary_cross_entropy"), lambda op, p, t: op(p, t), floats(2, low=0.05, high=0.95)),
    Op(
        _names("F.binary_cross_entropy_with_logits"),
        lambda op, x, t, w: op(x, t, pos_weight=w),
        floats(3),
    ),
    Op(_names("F.binary_cross_entropy_with_logits"), lambda op, x, t: op(x, t), floats(2)),
    Op(_names("F.gaussian_nll_loss"), lambda op, x, t, v: op(x, t, v * v + 0.1), floats(3)),
    Op(
        _names("F.cross_entropy", "F.nll_loss"),
        lambda op, x, t: op(x, t),
        lambda rng: [_normal(rng, (n := int(rng.integers(1, 4)), 3)), rng.integers(0, 3, (n,))],
    ),
    Op(
        _names("F.cross_entropy"),
        lambda op, x, t: op(x, t, label_smoothing=0.1),
        lambda rng: [
            _normal(rng, (n := int(rng.integers(1, 4)), 3, 2)),
            rng.integers(0, 3, (n, 2)),
        ],
    ),
    Op(_names("F.cross_entropy"), lambda op, x, p: op(x, p), floats(2, min_ndim=2, max_ndim=2)),
    Op(
        _names("F.one_hot"),
        lambda op, t: op(t, 4),
        lambda rng: [rng.integers(0, 4, shape(rng))],
        grad=False,
    ),
    Op(
        _names("F.embedding"),
        lambda op, i, w: op(i, w),
        lambda rng: [rng.integers(0, 4, shape(rng)), _normal(rng, (4, 2))],
    ),
    # engine.functional: convolution, pooling, resizing ---------------------------------------
    Op(
        _names("F.conv2d"),
        lambda op, x, w, b: op(x, w, b, padding=1),
        lambda rng: [images(rng, 2), _normal(rng, (2, 2, 2, 2)), _normal(rng, (2,))],
    ),
    Op(
        _names("F.conv_transpose2d"),
        lambda op, x, w: op(x, w, stride=2),
        lambda rng: [images(rng, 2), _normal(rng, (2, int(rng.integers(1, 3)), 2, 2))],
    ),
    Op(
        _names("F.max_pool2d", "F.avg_pool2d"),
        lambda op, x: op(x, 2, 1, 1),
        lambda rng: [images(rng, min_hw=2)],
    ),
    Op(
        _names("F.max_pool2d", "F.avg_pool2d"),
        lambda op, x: op(x, 2),
        lambda rng: [images(rng, min_hw=2)],
    ),
    Op(
        _names("F.max_pool2d", "F.avg_pool2d"),
        lambda op, x: op(x, (x.shape[2], 2), 1),
        lambda rng: [images(rng, min_hw=2)],
    ),
    Op(_names("F.max_pool2d", "F.avg_pool2d"), lambda op, x: op(x, 1), lambda rng: [images(rng)]),
    Op(_names("F.adaptive_avg_pool2d"), lambda op, x: op(x, (2, 1)), lambda rng: [images(rng)]),
    Op(
        _names("F.conv1d"),
        lambda op, x, w, b: op(x, w, b, padding=1),
        lambda rng: [images(rng, 2)[:, :, 0], _normal(rng, (2, 2, 2)), _normal(rng, (2,))],
    ),
    Op(
        _names("F.conv_transpose1d"),
        lambda op, x, w: op(x, w, stride=2),
        lambda rng: [images(rng, 2)[:, :, 0], _normal(rng, (2, int(rng.integers(1, 3)), 2))],
    ),
    Op(
        _names("F.max_pool1d", "F.avg_pool1d"),
        lambda op, x: op(x, 2, 1, 1),
        lambda rng: [images(rng, min_hw=2)[:, :, 0]],
    ),
    Op(_names("F.adaptive_max_pool2d"), lambda op, x: op(x, (2, 1)), lambda rng: [images(rng)]),
    Op(
        _names("F.conv3d"),
        lambda op, x, w, b: op(x, w, b, padding=1),
        lambda rng: [images(rng, 2)[:, :, None], _normal(rng, (2, 2, 2, 2, 2)), _normal(rng, (2,))],
    ),
    Op(
        _names("F.conv_transpose3d"),
        lambda op, x, w: op(x, w, stride=2),
        lambda rng: [images(rng, 2)[:, :, None], _normal(rng, (2, 1, 2, 2, 2))],
    ),
    Op(
        _names("F.max_pool3d", "F.avg_pool3d"),
        lambda op, x: op(x, (1, 2, 2), 1, (0, 1, 1)),
        lambda rng: [images(rng, min_hw=2)[:, :, None]],
    ),
    Op(
        _names("F.max_unpool2d"),
        lambda op, y, i: op(y, i, 2, output_size=(4, 4)),
        lambda rng: [_normal(rng, (1, 2, 2, 2)), rng.integers(0, 16, (1, 2, 2, 2))],
    ),
    Op(
        _names("F.interpolate", "F.upsample"),
        lambda op, x: op(x, scale_factor=2),
        lambda rng: [images(rng)],
    ),
    Op(
        _names("F.interpolate"),
        lambda op, x: op(x, size=(3, 2), mode="bilinear"),
        lambda rng: [images(rng)],
    ),
    Op(
        _names("F.interpolate"),
        lambda op, x: op(x, size=(3, 2), mode="bicubic"),
        lambda rng: [images(rng)],
    ),
    Op(
        _names("F.interpolate"),
        lambda op, x: op(x, scale_factor=2, mode="linear"),
        lambda rng: [images(rng)[..., 0]],
    ),
    Op(
        _names("F.interpolate"),
        lambda op, x: op(x, size=(2, 1, 3), mode="trilinear"),
        lambda rng: [images(rng)[:, :, None]],
    ),
    # Rounding, trigonometric and friends (engine/ops/math.py) --------------------------------
    *(unary(n, grad=False) for n in ("floor", "ceil", "round", "trunc", "fix")),
    unary("frac"),
    unary("exp2"),
    unary("expm1"),
    unary("log2", low=0.1, high=3.0),
    unary("log10", low=0.1, high=3.0),
    *(unary(n, low=-0.9, high=0.9) for n in ("asin", "acos", "arcsin", "arccos")),
    *(unary(n) for n in ("atan", "arctan", "sinh", "cosh", "asinh", "arcsinh")),
    *(unary(n, low=1.1, high=3.0) for n in ("acosh", "arccosh")),
    *(unary(n, low=-0.9, high=0.9) for n in ("atanh", "arctanh")),
    *(unary(n, grad=False) for n in ("isinf", "isposinf", "isneginf")),
    Op(
        _names(
            *(p + n for p in (E, T) for n in ("atan2", "arctan2", "copysign")),
        ),
        lambda op, a, b: op(a, b),
        broadcasting(),
    ),
    Op(
        _names(E + "fmod", T + "fmod"),
        lambda op, a, b: op(a, b * b + 0.5),
        broadcasting(),
    ),
    Op(
        _names(E + "isclose", T + "isclose", E + "allclose", T + "allclose"),
        lambda op, a, b: op(a, b),
        broadcasting(),
        grad=False,
    ),
    # Logical and bitwise (engine/ops/logical.py) ---------------------------------------------
    Op(
        _names(
            *(p + n for p in (E, T) for n in ("logical_and", "logical_or", "logical_xor")),
            T + "__xor__",
            T + "__rxor__",
            T + "__rand__",
            T + "__ror__",
        ),
        lambda op, a, b: op(a, b),
        _bools(2),
        grad=False,
    ),
    Op(_names(E + "logical_not", T + "logical_not"), lambda op, a: op(a), _bools(1), grad=False),
    Op(
        _names(
            *(p + n for p in (E, T) for n in ("bitwise_and", "bitwise_or", "bitwise_xor")),
        ),
        lambda op, a, b: op(a, b),
        _int32s(2),
        grad=False,
    ),
    Op(
        _names(
            *(p + n for p in (E, T) for n in ("bitwise_left_shift", "bitwise_right_shift")),
            T + "__lshift__",
            T + "__rshift__",
        ),
        lambda op, a, b: op(a, b & 3),
        _int32s(2),
        grad=False,
    ),
    Op(
        _names(T + "__rlshift__", T + "__rrshift__", T + "__rand__", T + "__ror__", T + "__rxor__"),
        lambda op, a: op(a & 3, 5),
        _int32s(1),
        grad=False,
    ),
    Op(_names(E + "bitwise_not", T + "bitwise_not"), lambda op, a: op(a), _int32s(1), grad=False),
    # Indexing and selection (engine/ops/indexing.py) -----------------------------------------
    Op(_names(E + "gather", T + "gather"), lambda op, x, i: op(x, 1, i), _gather_inputs),
    Op(
        _names(E + "take_along_dim", T + "take_along_dim"),
        lambda op, x, i: op(x, i, 1),
        _gather_inputs,
    ),
    Op(
        _names(E + "index_select", T + "index_select"),
        lambda op, x, i: op(x, 1, i[0]),
        _gather_inputs,
    ),
    Op(
        _names(E + "scatter", T + "scatter", E + "scatter_add", T + "scatter_add"),
        lambda op, x, i, src: op(x, 1, i, src),
        _scatter_inputs,
    ),
    *(
        Op(
            _names(E + "scatter_reduce", T + "scatter_reduce"),
            lambda op, x, i, src, r=r: op(x, 1, i, src, r, include_self=r != "sum"),
            _scatter_inputs,
            create_graph=r != "prod",
        )
        for r in ("sum", "prod", "mean", "amax", "amin")
    ),
    Op(
        _names(E + "masked_fill", T + "masked_fill"),
        lambda op, x, m: op(x, m, 0.5),
        _masked_inputs,
    ),
    Op(_names(E + "masked_select", T + "masked_select"), lambda op, x, m: op(x, m), _masked_inputs),
    Op(_names(E + "nonzero", T + "nonzero"), lambda op, x: op(x > 0), floats(), grad=False),
    Op(
        _names(E + "sort", T + "sort", E + "argsort", T + "argsort"),
        lambda op, x: op(x, -1),
        floats(min_ndim=1),
    ),
    Op(
        _names(E + "topk", T + "topk"),
        lambda op, x: op(x, 1, -1),
        floats(min_ndim=1),
    ),
    Op(
        _names(E + "any", T + "any", E + "all", T + "all"),
        lambda op, x: op(x > 0),
        floats(),
        grad=False,
    ),
    Op(
        _names(E + "tril", T + "tril", E + "triu", T + "triu", E + "diag", T + "diag"),
        lambda op, x: op(x),
        _matrix,
    ),
    Op(_names(E + "diagonal", T + "diagonal"), lambda op, x: op(x), _matrix),
    Op(_names(E + "roll", T + "roll"), lambda op, x: op(x, 1, 0), floats(min_ndim=1)),
    Op(
        _names(E + "repeat_interleave", T + "repeat_interleave"),
        lambda op, x: op(x, 2, 0),
        floats(min_ndim=1),
    ),
    Op(_names(T + "unfold"), lambda op, x: op(x, 0, 1, 1), floats(min_ndim=1)),
    Op(_names(E + "meshgrid"), lambda op, a, b: op(a, b), floats(2, min_ndim=1, max_ndim=1)),
    # Scans and paired reductions (engine/ops/scan.py) ----------------------------------------
    Op(
        _names(
            *(
                p + n
                for p in (E, T)
                for n in ("cumsum", "cumprod", "cummax", "cummin", "logcumsumexp")
            ),
        ),
        lambda op, x: op(x, _last(x)),
        floats(min_ndim=1),
    ),
    Op(_names(E + "var_mean", E + "std_mean"), lambda op, x: op(x, _last(x)), floats(min_ndim=1)),
    Op(_names(E + "logaddexp", T + "logaddexp"), lambda op, a, b: op(a, b), broadcasting()),
    Op(
        _names(E + "count_nonzero", T + "count_nonzero"),
        lambda op, x: op(x > 0),
        floats(),
        grad=False,
    ),
    *(
        Op(
            _names(E + "scatter_reduce", T + "scatter_reduce"),
            lambda op, x, i, src, r=reduce: op(x, 1, i, src, r, include_self=r != "mean"),
            _scatter_inputs,
        )
        for reduce in ("prod", "mean", "amax", "amin")
    ),
    # Activations (engine/functional.py) ------------------------------------------------------
    Op(
        _names(
            "F.logsigmoid",
            "F.hardsigmoid",
            "F.hardswish",
            "F.mish",
            "F.selu",
            "F.celu",
            "F.softsign",
        ),
        lambda op, x: op(x),
        floats(),
    ),
    Op(_names("F.celu"), lambda op, x: op(x, 0.5), floats()),
    Op(_names("F.glu"), lambda op, x: op(x), lambda rng: [_normal(rng, shape(rng) + (2,))]),
    Op(
        _names("F.prelu"),
        lambda op, x, w: op(x, w),
        lambda rng: [images(rng, 2), _normal(rng, (2,))],
    ),
    Op(
        _names("F.prelu"),
        lambda op, x, w: op(x, w),
        lambda rng: [_normal(rng, shape(rng)), _normal(rng, (1,))],
    ),
    # Products, norms and attention (engine/ops/linalg.py, engine/functional.py) --------------
    Op(
        _names(E + "bmm", T + "bmm"),
        lambda op, a, b: op(a, b),
        lambda rng: [_normal(rng, (2, int(rng.integers(1, 3)), 3)), _normal(rng, (2, 3, 1))],
    ),
    Op(
        _names(E + "baddbmm", T + "baddbmm"),
        lambda op, c, a, b: op(c, a, b, beta=0.5, alpha=2.0),
        lambda rng: [_normal(rng, (1, 1)), _normal(rng, (2, 1, 3)), _normal(rng, (2, 3, 2))],
    ),
    Op(
        _names(E + "outer", T + "outer"),
        lambda op, a, b: op(a, b),
        floats(2, min_ndim=1, max_ndim=1),
    ),
    Op(
        _names(E + "cross", T + "cross"),
        lambda op, a, b: op(a, b, dim=-1),
        lambda rng: [_normal(rng, (s := shape(rng, 0, 2)) + (3,)), _normal(rng, s + (3,))],
    ),
    Op(
        _names(E + "einsum"),
        lambda op, a, b: op("...ij,jk->...ik", a, b),
        lambda rng: [_normal(rng, shape(rng, 0, 1) + (2, 3)), _normal(rng, (3, 1))],
    ),
    Op(_names(E + "einsum"), lambda op, a: op("ii->i", a), lambda rng: [_normal(rng, (2, 2))]),
    Op(_names(E + "norm", T + "norm"), lambda op, x: op(x, float("inf")), floats()),
    Op(
        _names(E + "norm", T + "norm"),
        lambda op, x: op(x, "nuc", dim=(0, 1)),
        floats(min_ndim=2),
        create_graph=False,
    ),
    Op(
        _names("F.scaled_dot_product_attention"),
        lambda op, q, k, v: op(q, k, v, is_causal=True),
        lambda rng: [_normal(rng, (1, 2, 3)), _normal(rng, (1, 2, 3)), _normal(rng, (1, 2, 1))],
    ),
    Op(
        _names("F.scaled_dot_product_attention"),
        lambda op, q, k, v, m: op(q, k, v, attn_mask=m),
        lambda rng: [
            _normal(rng, (2, 3)),
            _normal(rng, (1, 3)),
            _normal(rng, (1, 2)),
            _normal(rng, (2, 1)),
        ],
    ),
    Op(_names("F.rms_norm"), lambda op, x, w: op(x, w.shape, w), floats(2, min_ndim=1)),
    # engine.linalg ---------------------------------------------------------------------------
    Op(
        _names("linalg.cross"),
        lambda op, a, b: op(a, b, dim=-1),
        lambda rng: [_normal(rng, (s := shape(rng, 0, 2)) + (3,)), _normal(rng, s + (3,))],
    ),
    Op(_names("linalg.vector_norm", "linalg.norm"), lambda op, x: op(x), floats()),
    *(
        Op(_names("linalg.vector_norm"), lambda op, x, o=o: op(x, o, dim=-1), floats(min_ndim=1))
        for o in (1, 3, float("inf"), 0)
    ),
    Op(
        _names("linalg.matrix_norm", "linalg.norm"),
        lambda op, x: op(x, "fro"),
        floats(min_ndim=2, max_ndim=2),
    ),
    Op(_names("linalg.matrix_norm"), lambda op, x: op(x, "fro"), floats(min_ndim=3)),
    Op(
        _names("linalg.matrix_norm", "linalg.svdvals"),
        lambda op, x: op(x) if op is engine.linalg.svdvals else op(x, "nuc"),
        floats(min_ndim=2),
        create_graph=False,
    ),
]


# What is not an op (no row needed), with the reason ------------------------------------------
NOT_OPS = {
    # engine: types, modes, creation from sizes (no tensor inputs), modules, files
    **dict.fromkeys(
        [
            E + n
            for n in (
                "Tensor",
                "tensor",
                "result_type",
                "promote_types",
                "from_numpy",
                "from_dlpack",
                "Device",
                "device",
                "cuda",
                "Function",
                "backward",
                "grad",
                "no_grad",
                "enable_grad",
                "set_grad_enabled",
                "is_grad_enabled",
                "detect_anomaly",
                "gradcheck",
                "use_deterministic_algorithms",
                "are_deterministic_algorithms_enabled",
                "manual_seed",
                "seed",
                "set_num_threads",
                "get_num_threads",
                "random",
                "memory",
                "functional",
                "data",
                "utils",
                "amp",
                "backends",
                "autocast",
                "is_autocast_enabled",
                "get_autocast_dtype",
                "linalg",
                "save",
                "load",
                "zeros",
                "ones",
                "full",
                "empty",
                "arange",
                "linspace",
                "eye",
                "rand",
                "randn",
                "randint",
                "randperm",
                "normal",
            )
        ],
        "not an op on tensors",
    ),
    # Tensor: in-place by design, conversions to Python/NumPy, autograd bookkeeping, metadata
    **dict.fromkeys(
        [
            T + n
            for n in (
                "add_",
                "sub_",
                "mul_",
                "div_",
                "fill_",
                "zero_",
                "copy_",
                "clamp_",
                "clip_",
                "normal_",
                "uniform_",
                "bernoulli_",
                "detach_",
                "requires_grad_",
                "__iadd__",
                "__isub__",
                "__imul__",
                "__itruediv__",
                "__setitem__",
            )
        ],
        "in-place by design",
    ),
    **dict.fromkeys(
        [
            T + n
            for n in (
                "numpy",
                "item",
                "tolist",
                "__float__",
                "__int__",
                "__bool__",
                "__index__",
                "__array__",
                "__dlpack__",
                "__dlpack_device__",
                "__iter__",
                "__len__",
                "__repr__",
                "__init__",
                "backward",
                "retain_grad",
                "register_hook",
                "register_post_accumulate_grad_hook",
                "size",
                "numel",
                "dim",
                "is_floating_point",
            )
        ],
        "conversion, metadata or autograd entry point, not an op",
    ),
}

# engine.functional helpers imported into its namespace, not part of its API
NOT_OPS["Tensor.bfloat16"] = (
    "the CuPy stand-in refuses bfloat16 arrays (CuPy 14's minimal bfloat16 is not modelled), so "
    "this table cannot run it "
    "on both devices; its values and gradients are tested in tests/engine/test_autocast.py (cpu)"
)
NOT_OPS.update(
    dict.fromkeys(
        ["F.full_like", "F.as_tensor"],
        "imported helper, not part of engine.functional's API",
    )
)
