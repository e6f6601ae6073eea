"""`Optimizer`: the base class, with PyTorch's param groups, per-parameter state and state dicts.

A subclass declares its hyper-parameters as ``defaults``, checks them in ``_check_group`` and
implements ``_update(p, grad, state, group)`` on raw arrays, usually one call to the fused kernel
of :mod:`kernels.optim_cpu` or :mod:`kernels.optim_gpu` chosen by the parameter's device.

State lives in ``self.state[param]`` (dicts keyed by the parameter itself) as Tensors on the
parameter's device plus plain numbers; ``state_dict()`` refers to parameters by their index in
the groups and holds host NumPy arrays and plain values only, so ``engine.save`` can store it.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import sys
import warnings
from typing import Any, Callable, Iterable

import numpy

import engine
from engine import Tensor
from engine.autograd import zero_grads
from engine.dtypes import is_low_precision, kind

__all__ = ["Optimizer", "required"]


class _Required:
    """Marks a hyper-parameter without a default (SGD-style ``lr``)."""

    def __repr__(self) -> str:
        return "<required parameter>"

    def __deepcopy__(self, memo: dict) -> "_Required":
        return self


required = _Required()

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


def _owner(cls: type, name: str) -> type | None:
    """The class of `cls`'s MRO that defines `name`."""
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def _backend(p: Tensor) -> Any:
    """The fused update kernels for the parameter's device."""
    return _kernels(p.device.type)


@functools.cache
def _kernels(device_type: str) -> Any:
    # Imported on first use (CuPy only when a CUDA parameter steps), then cached: an import
    # statement per parameter per step costs more than a cache lookup.
    if device_type == "cuda":
        from kernels import optim_gpu

        return optim_gpu
    from kernels import optim_cpu

    return optim_cpu


def check_number(
    name: str, value: Any, low: float = 0.0, high: float | None = None, high_open: bool = False
) -> None:
    """ValueError naming ``name`` unless ``low <= value`` (and ``value <(=) high``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"Invalid {name} value: {value!r} (expected a real number)")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        bound = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"Invalid {name} value: {value} (expected >= {low}{bound})")


class Optimizer:
    """Base class: ``Optimizer(params, defaults)`` with ``params`` tensors or group dicts."""

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got a Tensor of shape {params.shape}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"

    # Groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (a dict with 'params' and optional hyper-parameter overrides)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs; use a list instead"
            )
        elif params is None:
            raise ValueError("param_group has no 'params' entry")
        group["params"] = params = self._unique(list(params))
        for i, p in enumerate(params):
            self._check_param(p, i)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            group.setdefault(name, default)
        self._check_group(group)
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    @staticmethod
    def _unique(params: list[Any]) -> list[Any]:
        seen: set[int] = set()
        unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]
        if len(unique) != len(params):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; each is kept once",
                stacklevel=4,
            )
        return unique

    @staticmethod
    def _check_param(p: Any, i: int) -> None:
        if not isinstance(p, Tensor):
            raise TypeError(
                f"optimizer can only optimize Tensors, but parameter {i} is a {type(p).__name__}"
            )
        if not p.is_leaf:
            raise ValueError(f"can't optimize a non-leaf Tensor (parameter {i}, shape {p.shape})")
        if kind(p.dtype) != "f":  # bfloat16 (ml_dtypes) included
            raise TypeError(
                f"optimizer needs floating-point parameters, parameter {i} is "
                f"{p.dtype.name} of shape {p.shape}"
            )

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise ValueError naming any invalid hyper-parameter of ``group``."""

    # Gradients ---------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default) or to zeros in place (as
        `Module.zero_grad`; both are `engine.autograd.zero_grads`)."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    # Stepping ----------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with engine.enable_grad():
                loss = closure()
        multi = self._multi_tensor and _owner(type(self), "_update") is _owner(
            type(self), "_update_together"
        )  # a subclass that changes `_update` alone keeps its per-parameter updates
        for group in self.param_groups:
            together = []  # (p, grad, state) updated by one launch (CUDA multi-tensor apply)
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = self._grad_array(p)
                state = self.state.get(p)
                if not state:
                    state = self.state[p] = self._init_state(p, group)
                if multi and p.device.type == "cuda" and p.array.flags.c_contiguous:
                    together.append((p, grad, state))
                    continue
                self._update(p, grad, state, group)
                p._version[0] += 1  # in-place change: saved tensors of old graphs see it
            if together:
                self._update_together(together, group)
                for p, _, _ in together:
                    p._version[0] += 1
        return loss

    # Subclasses with a multi-tensor CUDA kernel set this and implement `_update_together`.
    _multi_tensor = False

    def _update_together(self, items: list[tuple[Tensor, Any, dict]], group: dict) -> None:
        """Update the CUDA parameters ``items`` ((p, grad, state), C-contiguous) of ``group``
        with one launch per batch that shares a device, a dtype and the update's scalars."""
        raise NotImplementedError

    @staticmethod
    def _batches(items: list, key: Callable[[Tensor, dict], Any]) -> list[list]:
        """``items`` split by device, dtype and ``key(p, state)``, in their order."""
        out: dict[Any, list] = {}
        for item in items:
            p, _, state = item
            out.setdefault((p.device, p.dtype, key(p, state)), []).append(item)
        return list(out.values())

    @staticmethod
    def _grad_array(p: Tensor) -> Any:
        g = p.grad
        if g.shape != p.shape:
            raise ValueError(f"gradient of shape {g.shape} does not match parameter {p.shape}")
        if g.dtype != p.dtype:
            raise TypeError(
                f"gradient dtype {g.dtype.name} does not match parameter dtype {p.dtype.name} "
                f"(shape {p.shape})"
            )
        if g.device != p.device:
            raise RuntimeError(
                f"gradient on {g.device} but parameter of shape {p.shape} on {p.device}"
            )
        return g.array

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """The state of a parameter before its first update."""
        return {}

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _zeros(p: Tensor, fill: float = 0.0) -> Tensor:
        """A C-contiguous state tensor shaped like ``p`` on its device, of ``p``'s dtype, or
        float32 for a float16/bfloat16 ``p`` (the fused updates compute in float32)."""
        return engine.full(p.shape, fill, dtype=_state_dtype(p.dtype), device=p.device)

    # State dicts -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {name: ndarray | number}}, 'param_groups': [{..., 'params': [index]}]}.

        Arrays are host NumPy copies, so the dict does not change as training goes on.
        """
        index: dict[Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[p] = len(index)
                packed["params"].append(index[p])
            groups.append(packed)
        state = {
            index[p]: {name: _to_host(value) for name, value in s.items()}
            for p, s in self.state.items()
            if p in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (arrays go to each parameter's device)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer "
                f"has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {i} has {len(saved['params'])} "
                    f"parameters, the optimizer's has {len(group['params'])}"
                )
            pairs = zip(saved["params"], group["params"], strict=True)
            by_index.update({int(k): p for k, p in pairs})
        state: dict[Tensor, dict[str, Any]] = {}
        for key, values in state_dict["state"].items():
            if int(key) not in by_index:
                raise ValueError(f"loaded state dict has state for unknown parameter {key}")
            p = by_index[int(key)]
            state[p] = {name: _restore(p, name, v, key) for name, v in values.items()}
        groups = []
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            new = {k: _plain(v) for k, v in saved.items() if k != "params"}
            new["params"] = group["params"]
            self._check_group(new)
            groups.append(new)
        self.param_groups = groups
        self.state = state


def _is_cupy_array(value: Any) -> bool:
    cp = sys.modules.get("cupy")  # never import CuPy here: only arrays it made can be CuPy's
    return cp is not None and isinstance(value, cp.ndarray)


def _to_host(value: Any) -> Any:
    """A host copy of a state entry (one copy: a GPU array's download is already one)."""
    if isinstance(value, Tensor):
        value = value.array
    if isinstance(value, numpy.ndarray):
        return value.copy()
    if _is_cupy_array(value):
        return value.get()
    return copy.deepcopy(value)


def _plain(value: Any) -> Any:
    """Hyper-parameters back from a checkpoint: 0-d arrays and numpy scalars as Python numbers."""
    if isinstance(value, (numpy.ndarray, numpy.generic)) and numpy.ndim(value) == 0:
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return copy.deepcopy(value)


def _state_dtype(dtype: Any) -> numpy.dtype:
    """The dtype of optimizer state for a parameter of ``dtype``: float32 for float16/bfloat16
    (an exp_avg_sq of 1e-9 is 0 in float16), the parameter's own otherwise."""
    return numpy.dtype(numpy.float32) if is_low_precision(dtype) else numpy.dtype(dtype)


def _restore(p: Tensor, name: str, value: Any, key: Any) -> Any:
    """A saved state entry as live state for ``p``: arrays as Tensors on p's device."""
    if isinstance(value, Tensor):
        value = value.numpy()
    elif _is_cupy_array(value):
        value = value.get()
    if isinstance(value, numpy.generic) or (
        isinstance(value, numpy.ndarray) and value.ndim == 0 and p.ndim != 0
    ):
        return value.item()
    if not isinstance(value, numpy.ndarray):
        return copy.deepcopy(value)
    if value.shape != p.shape:
        raise ValueError(
            f"loaded state {name!r} of parameter {key} has shape {value.shape}, "
            f"the parameter has {p.shape}"
        )
    dtype = _state_dtype(p.dtype) if kind(value.dtype) == "f" else value.dtype
    return engine.tensor(numpy.ascontiguousarray(value), dtype=dtype, device=p.device)
