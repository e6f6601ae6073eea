"""The eager autograd tape: `Function`, grad mode, and the backward walk.

Every differentiable op is a `Function`: `forward` gets raw arrays (NumPy or CuPy) and returns raw
arrays; `backward` gets the output gradients as Tensors and returns input gradients as Tensors,
written in engine ops, so with `create_graph=True` the backward pass is itself recorded (double
backward for gradient penalties).

The graph is recorded only when grad mode is on and an input requires grad. Outputs are held
weakly by their creator (Chainer's design), inputs strongly; `backward` walks functions in reverse
generation order with a heap (no recursion), pops each gradient as soon as it is consumed and frees
the graph unless `retain_graph=True`.
"""

from __future__ import annotations

import heapq
import itertools
import weakref
from typing import Any, Iterable, Sequence

from .dtypes import kind as _kind
from .grad_mode import (
    _mode,
    backward_walk,
    detect_anomaly,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .tensorbase import TensorBase

__all__ = [
    "Function",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "detect_anomaly",
    "grad",
    "backward",
    "RemovableHandle",
    "queue_callback",
]


# Hooks ---------------------------------------------------------------------------------------
# A tensor's `_hooks` is None or a pair of dicts {id: fn}: [0] gradient hooks (register_hook),
# [1] post-accumulate-grad hooks. `_live_hooks` counts registered hooks so that a backward with
# none anywhere (the common case) skips the dependency count below.

_hook_ids = itertools.count()
_live_hooks = 0


class RemovableHandle:
    """What `register_hook` returns: `handle.remove()` unregisters the hook (PyTorch's name)."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        global _live_hooks
        if self._hooks.pop(self._key, None) is not None:
            _live_hooks -= 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def add_hook(t, kind: int, hook) -> RemovableHandle:
    """Register `hook` on tensor `t`: kind 0 a gradient hook, 1 a post-accumulate-grad hook."""
    global _live_hooks
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    if t._hooks is None:
        t._hooks = ({}, {})
    key = next(_hook_ids)
    t._hooks[kind][key] = hook
    _live_hooks += 1
    return RemovableHandle(t._hooks[kind], key)


def _has_hooks(t) -> bool:
    return t._hooks is not None and bool(t._hooks[0] or t._hooks[1])


def queue_callback(callback) -> None:
    """Run `callback()` once the backward walk now running has finished (after every gradient
    and hook); DistributedDataParallel waits for its last all-reduces there."""
    if _mode.callbacks is None:
        raise RuntimeError("queue_callback can only be called during a backward pass")
    _mode.callbacks.append(callback)


def _count_hooked_edges(roots) -> dict:
    """For every hooked tensor reachable from `roots`: how many graph edges lead into it (its
    uses), so its hooks run once, as soon as its last gradient contribution arrived."""
    counts: dict[int, int] = {}
    seen: set[int] = set()
    stack = []

    def visit(t):
        if _has_hooks(t):
            counts[id(t)] = counts.get(id(t), 0) + 1
        fn = t.grad_fn
        if fn is not None and id(fn) not in seen:
            seen.add(id(fn))
            stack.append(fn)

    for t in roots:
        visit(t)
    while stack:
        fn = stack.pop()
        for x in getattr(fn, "inputs", ()):  # a freed function: the walk raises on it
            if x.requires_grad:
                visit(x)
    return counts


class AnomalyError(RuntimeError):
    """Raised inside `detect_anomaly()` by the first op producing NaN or Inf."""


def _check_finite(fn_name: str, phase: str, xp, arrays: Iterable[Any]) -> None:
    """AnomalyError unless every float array is finite; `xp` is the op's array module (a
    forward may return a NumPy scalar rather than an ndarray)."""
    for a in arrays:
        if a is None or _kind(a.dtype) not in "fc":
            continue
        if not bool(xp.isfinite(a).all()):
            raise AnomalyError(f"Function '{fn_name}' returned NaN or Inf values in its {phase}")


def _anomaly_backward(fn, gys):
    """`fn.backward` under `detect_anomaly()`: a non-finite gradient names `fn`'s backward, also
    when it appears inside one of the engine ops that the backward is written in."""
    try:
        gxs = fn.backward(*gys)
    except AnomalyError as e:
        raise AnomalyError(
            f"Function '{fn.name}' returned NaN or Inf values in its backward ({e})"
        ) from None
    _check_finite(
        fn.name,
        "backward",
        fn.xp,
        [g.array for g in (gxs if isinstance(gxs, tuple) else (gxs,)) if g is not None],
    )
    return gxs


class Function:
    """Base class of every differentiable op.

    Subclasses set hyper-parameters in `__init__`, implement `forward(*arrays)` and
    `backward(*grad_outputs)`. Set `saves_inputs = False` on ops whose backward never reads their
    inputs' values (add, reshape, ...), so in-place changes to those inputs are not flagged.
    """

    saves_inputs = True
    differentiable = True

    inputs: tuple
    generation: int = 0

    def __call__(self, *inputs):
        # The hot path of the whole engine: kept flat, no imports, no per-call closures.
        ref = None
        convert = False
        for x in inputs:
            if isinstance(x, TensorBase):
                if ref is None:
                    ref = x
                elif x._device is not ref._device and x._device != ref._device:
                    raise RuntimeError(
                        f"{type(self).__name__}: expected all tensors on the same device, "
                        f"found {ref._device} and {x._device}"
                    )
            else:
                convert = True
        if convert:
            inputs = tuple(x if isinstance(x, TensorBase) else ref._operand(x) for x in inputs)
        dev = ref._device
        self.device = dev
        self.xp = dev.xp
        if dev.index is None:  # cpu
            ys = self.forward(*[t.array for t in inputs])
        else:  # the one place every op's CUDA work is put on its tensors' device
            previous = dev.activate()
            try:
                ys = self.forward(*[t.array for t in inputs])
            finally:
                dev.restore(previous)
        single = type(ys) is not tuple
        if single:
            ys = (ys,)
        if _mode.anomaly:
            _check_finite(type(self).__name__, "forward", self.xp, ys)
        record = False
        if _mode.grad_enabled and self.differentiable:
            for t in inputs:
                if t.requires_grad:
                    record = True
                    break
        wrap = ref._new  # engine.Tensor (also for a Parameter input)
        if not record:
            return wrap(ys[0], dev) if single else tuple(wrap(y, dev) for y in ys)
        self.inputs = inputs
        gen = 0
        for t in inputs:
            fn = t.grad_fn
            if fn is not None and fn.generation > gen:
                gen = fn.generation
        self.generation = gen + 1
        if self.saves_inputs:
            self._versions = [t._version[0] for t in inputs]
        if single:  # no list for one output: a comprehension is a call of its own
            out = wrap(ys[0], dev, True, self)
            self._outputs = (weakref.ref(out),)
            return out
        outputs = [wrap(y, dev, True, self) for y in ys]
        self._outputs = tuple([weakref.ref(o) for o in outputs])
        self._out_meta = tuple([(y.shape, y.dtype) for y in ys])  # zero grads for unused outputs
        return tuple(outputs)

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    # Helpers for backward implementations --------------------------------------------------
    def operands(self, gy):
        """`(inputs, gy)` for a backward formula written once for both of its modes.

        When the backward is recorded (`create_graph=True`) they are the Tensors themselves, so
        the formula's operators and methods (`@`, `*`, `.T`, `.reshape`, `.sum`) are engine ops
        and the gradient is differentiable again; otherwise they are the raw arrays, so the same
        formula runs on NumPy/CuPy without the tape's wrappers (the fast path). `results` turns
        what the formula returns back into Tensors.
        """
        if _mode.grad_enabled:
            return self.inputs, gy
        return tuple([t.array for t in self.inputs]), gy.array  # a list: one call, not one per item

    def results(self, gy, *grads):
        """The gradients a formula on `operands` computed, as Tensors (None stays None)."""
        if _mode.grad_enabled:
            return grads
        return tuple([None if g is None else gy._new(g, gy.device) for g in grads])

    def output(self):
        """The (single) output tensor; alive whenever backward reaches this function.

        Backwards that read their output's values get it here, so an in-place change to the
        output since the forward (its version counter left 0) is caught here.
        """
        out = self._outputs[0]()
        if out._version[0]:
            raise RuntimeError(
                f"one of the tensors needed for gradient computation has been modified by an "
                f"in-place operation: output 0 of {self.name}, shape {out.shape}, is at version "
                f"{out._version[0]}; expected version 0"
            )
        return out

    def outputs_alive(self):
        return tuple([r() for r in self._outputs])

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _check_versions(self) -> None:
        if not self.saves_inputs:
            return
        for i, (t, v) in enumerate(zip(self.inputs, self._versions)):
            if t._version[0] != v:
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation has been modified by an "
                    f"in-place operation: input {i} of {self.name}, shape {t.shape}, is at version "
                    f"{t._version[0]}; expected version {v}"
                )

    def _release(self) -> None:
        self.__dict__.clear()
        self._freed = True


def _freed_error(fn) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time ({fn.name} was already freed); "
        "specify retain_graph=True on the first backward if you need to backward twice"
    )


def _own(g):
    """g, or a copy when its array is a shared implicit ones (_ONES): grad() returns arrays
    its caller may modify."""
    a = g.array
    if a.size != 1 or _ONES.get((id(g.device.xp), str(g.device), a.dtype.str, a.shape)) is not a:
        return g
    return g._new(a.copy(), g.device)


def _deferrable(t, g) -> bool:
    """Whether adding g into t's existing .grad may wait for the end of the walk: on cuda,
    float32/64 of the grad's dtype and shape. The walk asks only when it runs no hooks: a
    hook, t's or any other tensor's, may read t.grad and must see it as the cpu does."""
    a = t.grad.array
    return (
        t.device.type == "cuda"
        and a.dtype == g.dtype
        and a.dtype.name in ("float32", "float64")
        and a.shape == g.shape
    )


def _add_deferred(entries) -> None:
    """``t.grad = t.grad + g`` for every deferred (t, g): the C-contiguous ones of a (device,
    dtype) group in one kernel (kernels.grad_gpu.add_multi), the rest one addition each. The
    sums are new arrays, as the undeferred addition makes."""
    groups: dict[tuple, list] = {}
    for t, g in entries:
        a = t.grad.array
        if a.flags.c_contiguous and g.flags.c_contiguous:
            groups.setdefault((str(t.device), a.dtype.name), []).append((t, g))
        else:
            with t.device:
                t.grad = t._new(a + g, t.device)
    for group in groups.values():
        if len(group) == 1:
            t, g = group[0]
            with t.device:
                t.grad = t._new(t.grad.array + g, t.device)
            continue
        from kernels import grad_gpu  # noqa: PLC0415 (CuPy only on cuda)

        sums = grad_gpu.add_multi([t.grad.array for t, _ in group], [g for _, g in group])
        for (t, _), total in zip(group, sums, strict=True):
            t.grad = t._new(total, t.device)


def _walk(
    roots: Sequence,
    root_grads: Sequence,
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence | None = None,
    allow_unused: bool = False,
):
    """The walk shared by `Tensor.backward` and `engine.grad`.

    With `inputs=None`, gradients are accumulated into the `.grad` of leaves (and of tensors that
    called `retain_grad()`); otherwise they are returned for `inputs`, `.grad` untouched.
    """
    grads: dict[int, tuple[TensorBase, TensorBase]] = {}
    wanted: dict[int, TensorBase | None] = {} if inputs is None else {id(t): None for t in inputs}
    heap: list = []
    seen: set[int] = set()
    # Arrays already stored as some leaf's .grad during this walk, by id, held so that an id
    # is not reused by a new array (which would then be copied for nothing).
    stored: dict[int, object] = {}
    # Additions into a .grad that already exists, on cuda: id -> [tensor, array to add], done
    # together after the walk, one launch per (device, dtype) (_add_deferred).
    deferred: dict[int, list] = {}
    counter = 0

    def push(fn):
        nonlocal counter
        if id(fn) not in seen:
            if getattr(fn, "_freed", False):
                raise _freed_error(fn)
            seen.add(id(fn))
            heapq.heappush(heap, (-fn.generation, counter, fn))
            counter += 1

    counts = _count_hooked_edges(roots) if _live_hooks else {}
    pending: dict[int, tuple] = {}  # hooked tensors: (tensor, gradient so far) until settled

    def accumulate(t, g):
        if id(t) in counts:
            prev = pending.get(id(t))
            pending[id(t)] = (t, g if prev is None else prev[1] + g)
            edge_done(t)
        else:
            store(t, g)

    def edge_done(t):
        """One use of hooked tensor `t` has given its gradient (or none): after the last one,
        run its hooks on the summed gradient and pass it on."""
        key = id(t)
        counts[key] -= 1
        if counts[key] <= 0 and key in pending:
            settle(*pending.pop(key))

    def settle(t, g):
        for hook in list(t._hooks[0].values()):
            out = hook(g)
            if out is not None:
                g = _as_grad(t, out)
        store(t, g)
        if inputs is None and t.grad_fn is None and t.requires_grad:
            for hook in list(t._hooks[1].values()):
                hook(t)

    def store(t, g):
        key = id(t)
        if key in wanted:
            prev = wanted[key]
            wanted[key] = _own(g) if prev is None else prev + g
            if t.grad_fn is None:
                return
        elif t.grad_fn is None or t._retains_grad:
            if inputs is None and t.requires_grad:
                if create_graph:  # the Tensor itself (its graph), but never the shared ones
                    t.grad = _own(g) if t.grad is None else t.grad + g
                elif t.grad is not None:
                    if not counts and _deferrable(t, g):
                        entry = deferred.setdefault(key, [t, None])
                        entry[1] = g.array if entry[1] is None else entry[1] + g.array
                    else:
                        t.grad = t._new(t.grad.array + g.array, t.device)
                else:
                    # Backward may hand one array to several inputs (add), or a view (a
                    # read-only broadcast, a reshape of another leaf's gradient): each .grad
                    # owns its array, so in-place clipping or scaling touches only that one.
                    array = g.array
                    if id(array) in stored or getattr(array, "base", None) is not None:
                        array = array.copy()
                    stored[id(array)] = array
                    t.grad = t._new(array, t.device)
            if t.grad_fn is None:
                return
        prev = grads.get(key)
        grads[key] = (t, g if prev is None else prev[1] + g)
        push(t.grad_fn)

    stored.update((id(g.array), g.array) for g in root_grads)  # the caller's: never alias
    outer_callbacks, _mode.callbacks = _mode.callbacks, []
    walked = False
    try:
        with set_grad_enabled(create_graph):
            for t, g in zip(roots, root_grads):
                if not t.requires_grad:
                    raise RuntimeError(
                        "element 0 of tensors does not require grad and does not have a grad_fn"
                    )
                with t.device:
                    accumulate(t, g)
            while heap or pending:
                if not heap:  # a hooked tensor some of whose uses got no gradient: settle it
                    settle(*pending.pop(next(iter(pending))))
                    continue
                fn = heapq.heappop(heap)[2]
                outs = fn.outputs_alive()
                gys = []
                for o in outs:
                    entry = grads.pop(id(o), None) if o is not None else None
                    gys.append(None if entry is None else entry[1])
                if all(g is None for g in gys):
                    for x in fn.inputs if counts else ():
                        if x.requires_grad and id(x) in counts:
                            edge_done(x)
                    continue
                if len(gys) > 1:
                    gys = [
                        g if g is not None else fn.inputs[0]._new(fn.xp.zeros(*meta), fn.device)
                        for g, meta in zip(gys, fn._out_meta)
                    ]
                fn._check_versions()
                # The backward and the accumulation into .grad run on the op's device.
                previous = fn.device.activate() if fn.device.index is not None else None
                try:
                    if _mode.anomaly:
                        gxs = _anomaly_backward(fn, gys)
                    else:
                        gxs = fn.backward(*gys)
                    if not isinstance(gxs, tuple):
                        gxs = (gxs,)
                    for x, gx in zip(fn.inputs, gxs):
                        if gx is not None and x.requires_grad:
                            if gx.shape != x.shape:
                                raise RuntimeError(
                                    f"{fn.name}.backward returned a gradient of shape "
                                    f"{gx.shape} for an input of shape {x.shape}"
                                )
                            accumulate(x, gx)
                        elif x.requires_grad and id(x) in counts:
                            edge_done(x)
                finally:
                    if previous is not None:
                        fn.device.restore(previous)
                if not retain_graph:
                    fn._release()
            walked = True
            _add_deferred(deferred.values())
            while _mode.callbacks:
                _mode.callbacks.pop(0)()
    except BaseException:
        if not walked:  # an error mid-walk: the additions made so far land, as on the cpu
            _add_deferred(deferred.values())
        raise
    finally:
        _mode.callbacks = outer_callbacks

    if inputs is None:
        return None
    result = []
    for t in inputs:
        g = wanted[id(t)]
        if g is None and not allow_unused:
            raise RuntimeError(
                "One of the differentiated tensors appears to not have been used in the graph; "
                "set allow_unused=True if this is the desired behavior"
            )
        result.append(g)
    return tuple(result)


# The implicit gradient of a scalar on cuda, one array per (CuPy module, device, dtype, shape),
# made once: a fill kernel less per backward. Never written: the walk hands a root's gradient
# to backward formulas (which never modify their gy), and copies it before storing it as a
# .grad (`stored`; `_own` when create_graph) or returning it from grad() (`_own`).
_ONES: dict[tuple, object] = {}


def _ones_grad(t):
    if t.array.size != 1:
        raise RuntimeError(
            f"grad can be implicitly created only for scalar outputs, got shape {t.shape}; "
            "pass a gradient of the same shape"
        )
    xp = t.device.xp
    if t.device.type != "cuda":
        return t._new(xp.ones(t.shape, t.dtype), t.device)
    key = (id(xp), str(t.device), t.dtype.str, t.shape)
    ones = _ONES.get(key)
    if ones is None:
        with t.device:
            ones = _ONES[key] = xp.ones(t.shape, t.dtype)
    return t._new(ones, t.device)


def _as_grad(t, g):
    if g is None:
        return _ones_grad(t)
    if not isinstance(g, TensorBase):
        g = t._operand(g)
    if g.shape != t.shape:
        raise RuntimeError(f"gradient of shape {g.shape} given for a tensor of shape {t.shape}")
    return g


def _root_grads(roots: list, grads) -> list:
    """One checked gradient per root: `grads` is None (ones for scalars), a Tensor or a list."""

    if grads is None or isinstance(grads, TensorBase):
        grads = [grads] * len(roots) if grads is None else [grads]
    return [_as_grad(t, g) for t, g in zip(roots, grads)]


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False) -> None:
    """`engine.autograd.backward`: accumulate gradients of `tensors` into the leaves' `.grad`."""

    tensors = [tensors] if isinstance(tensors, TensorBase) else list(tensors)
    retain = create_graph if retain_graph is None else retain_graph
    with backward_walk():  # autocast is off in the walk: gradients in their forward's dtypes
        _walk(tensors, _root_grads(tensors, grad_tensors), retain, create_graph)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
):
    """Gradients of `outputs` with respect to `inputs` (a tuple), leaving `.grad` untouched."""

    outputs = [outputs] if isinstance(outputs, TensorBase) else list(outputs)
    single_input = isinstance(inputs, TensorBase)
    inputs = [inputs] if single_input else list(inputs)
    retain = create_graph if retain_graph is None else retain_graph
    gs = _root_grads(outputs, grad_outputs)
    with backward_walk():
        return _walk(outputs, gs, retain, create_graph, inputs, allow_unused)


def owns_memory(array) -> bool:
    """Whether ``array`` may be written in place: it owns its C-contiguous memory, so it is no
    view of another array (a broadcast, a reshape of another tensor's gradient).

    Asked through ``base``, which NumPy and CuPy both have; CuPy's ``flags`` has no ``writeable``.
    """
    return array.base is None and array.flags.c_contiguous


def zero_grads(tensors: Iterable, set_to_none: bool = True) -> None:
    """PyTorch's `zero_grad` for `Module` and `Optimizer` alike: every `.grad` to None (default),
    or with `set_to_none=False` to zeros in place (a fresh zero tensor where the gradient is
    part of a graph or a view of memory it does not own)."""
    for t in tensors:
        g = t.grad
        if g is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            with g.device:  # the zeros / the fill on the gradient's own GPU
                if g.grad_fn is not None or not owns_memory(g.array):
                    t.grad = g._new(g.xp.zeros(g.shape, g.dtype), g.device)
                else:
                    g.array.fill(0)
