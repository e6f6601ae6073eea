"""`Parameter`, `Module` and the containers (`Sequential`, `ModuleList`, `ModuleDict`).

PyTorch's shape: attribute assignment registers parameters, buffers and sub-modules in ordered
dicts, their dotted names are the `state_dict()` keys, and `to()` moves tensors in place so that an
optimizer built before the move still holds the live parameters.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterable, Iterator

import numpy

import engine
from engine import Tensor
from engine.autograd import zero_grads
from engine.tensor import to_args

__all__ = [
    "Parameter",
    "Module",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "IncompatibleKeys",
]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf Tensor that a `Module` registers as learnable (requires grad by default)."""

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = engine.empty(0)
        elif not isinstance(data, Tensor):
            data = engine.tensor(data)
        p = cls._wrap(data.array, data.device)
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # everything happens in __new__ (Tensor.__init__ would copy the data)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


def _call_with_hooks(module: Module, *args, **kwargs):
    """``module(*args)`` with forward hooks: the pre-hooks (which may replace the arguments),
    ``forward``, then the hooks (which may replace the output)."""
    for hook in list(module._forward_pre_hooks.values()):
        result = hook(module, args)
        if result is not None:
            args = result if isinstance(result, tuple) else (result,)
    out = module.forward(*args, **kwargs)
    for hook in list(module._forward_hooks.values()):
        result = hook(module, args, out)
        if result is not None:
            out = result
    return out


class _Call:
    """``Module.__call__``: a descriptor rather than a method, so that calling a module with no
    forward hooks (the usual case) calls its bound ``forward`` directly. The call then puts no
    frame of this file between the caller and ``forward`` (a layer's traceback and stack start
    at its forward: benchmarks.call_depth); with hooks it is :func:`_call_with_hooks`. Looked
    up on the class (``Module.__call__(m, x)``, ``inspect.signature``), it is that function."""

    def __get__(self, module: Module | None, owner: type | None = None):
        if module is None:
            return _call_with_hooks
        if module._forward_pre_hooks or module._forward_hooks:
            return _call_with_hooks.__get__(module, owner)
        return module.forward


class Module:
    """Base class of every layer and model: subclasses set attributes in `__init__` (after
    `super().__init__()`) and implement `forward`."""

    training: bool

    def __init__(self, *args, **kwargs) -> None:
        if args or kwargs:
            raise TypeError(
                f"{type(self).__name__}.__init__() got unexpected arguments; "
                "Module.__init__ takes none"
            )
        setattr_ = object.__setattr__
        setattr_(self, "training", True)
        setattr_(self, "_parameters", OrderedDict())
        setattr_(self, "_buffers", OrderedDict())
        setattr_(self, "_non_persistent_buffers", set())
        setattr_(self, "_modules", OrderedDict())
        setattr_(self, "_forward_pre_hooks", OrderedDict())
        setattr_(self, "_forward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing "forward"')

    __call__ = _Call()

    # Registration -------------------------------------------------------------------------
    def _check_init(self, what: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    @staticmethod
    def _check_name(name: Any, kind: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got "{name}"')

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or `None`, a placeholder such as an absent bias) under `name`."""
        self._check_init("parameters")
        self._check_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(Parameter or None required)"
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a non-learnable tensor (running statistics); persistent ones go in state_dict."""
        self._check_init("buffers")
        self._check_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                "(Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_init("child modules")
        self._check_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._check_init("parameters")
            self._forget(name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._check_init("child modules")
            self._forget(name)
            self._modules[name] = value
        elif self.__dict__.get("_modules") is not None and name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(Module or None expected)"
                )
            self._modules[name] = None
        elif self.__dict__.get("_buffers") is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                    "(Tensor or None expected)"
                )
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        self.__dict__.pop(name, None)
        for registry in ("_parameters", "_buffers", "_modules"):
            self.__dict__[registry].pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the registered tensors and sub-modules.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = itertools.chain(super().__dir__(), self._parameters, self._buffers, self._modules)
        return sorted(k for k in set(keys) if not k[0].isdigit())

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """`hook(module, args)` runs before forward; may return replacement args."""
        return _RemovableHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """`hook(module, args, output)` runs after forward; may return a replacement output."""
        return _RemovableHandle(self._forward_hooks, hook)

    # Traversal ----------------------------------------------------------------------------
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, with dotted names ('' for self)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from child.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool):
        seen: set[int] = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mod_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs in registration order; shared parameters once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{type(module).__name__} has no sub-module '{part}'")
            module = module._modules[part]
        return module

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        module = self.get_submodule(mod_path)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter '{name}'")
        return module._parameters[name]

    def get_buffer(self, target: str) -> Tensor:
        mod_path, _, name = target.rpartition(".")
        module = self.get_submodule(mod_path)
        if name not in module._buffers:
            raise AttributeError(f"{type(module).__name__} has no buffer '{name}'")
        return module._buffers[name]

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every sub-module (children first) and then on self (custom init)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # Modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (`False`) or unfreeze every parameter, e.g. a GAN's discriminator."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default) or to zeros in place (as
        `Optimizer.zero_grad`; both are `engine.autograd.zero_grads`)."""
        zero_grads(self.parameters(), set_to_none)

    # Devices and dtypes -------------------------------------------------------------------
    def _apply(self, fn: Callable[[Tensor], Tensor]) -> Module:
        """Replace every parameter's, gradient's and buffer's array by `fn` of it, in place."""
        with engine.no_grad():
            for t in itertools.chain(self.parameters(), self.buffers()):
                _assign(t, fn(t.detach()))
                if t.grad is not None:
                    _assign(t.grad, fn(t.grad.detach()))
        return self

    def to(self, *args, **kwargs) -> Module:
        """`to(device)`, `to(dtype)`, `to(device, dtype)` or `to(tensor)`, in place.

        Dtype casts apply to floating-point tensors only (integer buffers such as
        `num_batches_tracked` keep theirs), as in PyTorch.
        """
        dev, dtype = _parse_to(args, kwargs)

        def convert(t: Tensor) -> Tensor:
            if dtype is not None and t.dtype.kind == "f":
                t = t.to(dtype)
            return t.to(dev) if dev is not None else t

        return self._apply(convert)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Module:
        if device is None:
            device = "cuda"
        elif isinstance(device, int):
            device = f"cuda:{device}"
        return self.to(device)

    def float(self) -> Module:
        return self.to(numpy.float32)

    def double(self) -> Module:
        return self.to(numpy.float64)

    def half(self) -> Module:
        return self.to(numpy.float16)

    # State --------------------------------------------------------------------------------
    def _state_items(self, keep_vars: bool) -> Iterator[tuple[str, Tensor]]:
        # Shared (tied) modules and tensors appear under every name, as in PyTorch.
        for prefix, module in self.named_modules(remove_duplicate=False):
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield dot + name, p if keep_vars else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    yield dot + name, b if keep_vars else b.detach()

    def state_dict(
        self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict:
        """Parameters and persistent buffers by dotted name (detached, sharing memory)."""
        out = OrderedDict() if destination is None else destination
        for name, t in self._state_items(keep_vars):
            out[prefix + name] = t
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing parameters and buffers (their identity and device kept).

        Shape mismatches always raise; with `strict=True` missing or unexpected keys raise too.
        Returns `(missing_keys, unexpected_keys)`.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"expected a dict for state_dict, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items(keep_vars=True))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _as_tensor_value(state_dict[key], key)
            if tuple(value.shape) != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                    f"from checkpoint, the shape in current model is {tuple(target.shape)}."
                )
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " + _quoted(unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + _quoted(missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        with engine.no_grad():
            for key, target in own.items():
                if key in state_dict:
                    target.copy_(_as_tensor_value(state_dict[key], key))
        return IncompatibleKeys(missing, unexpected)

    # Representation -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in `repr` (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, module in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(module), 2))
        if not lines:
            return f"{self._get_name()}()"
        if len(lines) == 1 and not self._modules:
            return f"{self._get_name()}({lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


def _quoted(keys: list[str]) -> str:
    return ", ".join(f'"{k}"' for k in keys)


def _as_tensor_value(value: Any, key: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numpy.ndarray, numpy.generic, int, float)):
        return engine.as_tensor(value)
    raise TypeError(f"state_dict entry '{key}' is a {type(value).__name__}, expected a Tensor")


def _assign(target: Tensor, new: Tensor) -> None:
    """Point `target` at `new`'s array and device, keeping the Python object (and its identity)."""
    if new.array is not target.array:
        target.array = new.array
        target._device = new.device
        target._version[0] += 1


def _parse_to(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    dev, dtype = to_args(args, kwargs)
    if dtype is not None and dtype.kind != "f":
        raise TypeError(f"Module.to() only accepts floating point dtypes, got {dtype}")
    return dev, dtype


class _RemovableHandle:
    _ids = itertools.count()

    def __init__(self, registry: OrderedDict, hook: Callable):
        self.registry, self.id = registry, next(self._ids)
        registry[self.id] = hook

    def remove(self) -> None:
        self.registry.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# Containers -------------------------------------------------------------------------------
class _IndexedContainer(Module):
    """What Sequential and ModuleList share: members in order, bounds-checked integer indices."""

    def _index(self, idx: int) -> int:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for {type(self).__name__} of length {n}")
        return idx % n

    def _renumber(self, modules: Iterable[Module]) -> None:
        """Re-register `modules` as '0', '1', ... in order."""
        items = list(modules)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_IndexedContainer):
    """Modules called in order: `Sequential(a, b, c)` or `Sequential(OrderedDict(name=module))`."""

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def __getitem__(self, idx: int | slice) -> Module:
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules)[self._index(idx)]
        self.add_module(key, module)

    def __delitem__(self, idx: int | slice) -> None:
        keys = list(self._modules)
        for key in keys[idx] if isinstance(idx, slice) else [keys[self._index(idx)]]:
            del self._modules[key]
        if all(k.isdigit() for k in self._modules):  # keep 0..n-1 numbering
            self._renumber(self._modules.values())

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        items = list(self._modules.values())
        n = len(items)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for insertion into length {n}")
        items.insert(index, module)
        self._renumber(items)
        return self

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(_IndexedContainer):
    """A list of sub-modules, registered (so their parameters are found) but not called."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: int | slice):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(self._index(idx))]

    def __setitem__(self, idx: int, module: Module) -> None:
        self.add_module(str(self._index(idx)), module)

    def __delitem__(self, idx: int | slice) -> None:
        items = list(self._modules.values())
        del items[idx if isinstance(idx, slice) else self._index(idx)]
        self._renumber(items)

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        if isinstance(modules, Module) or not isinstance(modules, Iterable):
            raise TypeError(
                f"ModuleList.extend should be called with an iterable, got {type(modules).__name__}"
            )
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        self._renumber(items)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is not callable; iterate over it in your forward")


class ModuleDict(Module):
    """An ordered dict of sub-modules, registered under their keys."""

    def __init__(self, modules: dict | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def pop(self, key: str) -> Module:
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        self._modules.clear()

    def update(self, modules: dict | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, (dict, ModuleDict)) else modules
        for key, module in pairs:
            self[key] = module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict is not callable; index it in your forward")
