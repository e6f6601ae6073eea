"""`engine.save` / `engine.load`: checkpoints as one `.npz` of arrays plus a JSON structure entry.

Nested dicts, lists and tuples of Tensors, raw arrays and plain JSON values are flattened into
arrays `a0, a1, ...` and a JSON description of the structure (stored as UTF-8 bytes under
`__structure__`). The file is written to a temp file in the same directory, fsynced and renamed,
so a crash mid-save leaves the previous checkpoint intact; it is read with `allow_pickle=False`,
so loading a stranger's checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy

from dataio.files import atomic_write

from .device import array_device, cuda, device
from .tensor import Tensor, tensor

__all__ = ["save", "load"]

FORMAT = "tensortape-checkpoint"
VERSION = 1
_META_KEY = "__structure__"
_PLAIN = (str, int, float, bool, type(None))


def _is_raw_cuda_array(x: Any) -> bool:
    cp = sys.modules.get("cupy")  # never import CuPy here: only arrays it made can be CuPy's
    return cp is not None and isinstance(x, cp.ndarray)


def _host_array(array, where: str) -> numpy.ndarray:
    array = array.get() if not isinstance(array, numpy.ndarray) else array
    if array.dtype.hasobject:
        raise TypeError(
            f"cannot save object-dtype array at {where}: only numeric arrays are stored"
        )
    return array


class _Encoder:
    """Walks an object tree: returns its JSON node and collects arrays into `self.arrays`."""

    def __init__(self):
        self.arrays: dict[str, numpy.ndarray] = {}

    def _add(self, array: numpy.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return key

    def encode(self, obj: Any, where: str):
        if isinstance(obj, _PLAIN):
            return obj
        if isinstance(obj, dict):
            return {"t": "dict", "items": [self._item(k, v, where) for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return {"t": "tuple" if isinstance(obj, tuple) else "list", "items": items}
        if isinstance(obj, Tensor):
            array = _host_array(obj.detach().array, where)
            return {
                "t": "tensor",
                "array": self._add(array),
                "device": str(obj.device),
                "requires_grad": bool(obj.requires_grad),
            }
        if isinstance(obj, numpy.ndarray) or _is_raw_cuda_array(obj):
            where_from = str(array_device(obj))
            return {
                "t": "ndarray",
                "array": self._add(_host_array(obj, where)),
                "device": where_from,
            }
        if isinstance(obj, numpy.generic):
            return {"t": "scalar", "array": self._add(_host_array(numpy.asarray(obj), where))}
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise TypeError(
            f"cannot save object of type {kind} at {where}: "
            "only dicts, lists, tuples, Tensors, arrays, numpy scalars, str, int, float, bool "
            "and None can be saved"
        )

    def _item(self, key, value, where: str) -> list:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise TypeError(f"cannot save dict key {key!r} at {where}: keys must be str or int")
        return [key, self.encode(value, f"{where}[{key!r}]")]


def _write_npz(f, arrays: dict[str, numpy.ndarray]) -> None:
    numpy.savez(f, **arrays)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save `obj` (nested dicts/lists/tuples of Tensors, arrays and plain values) to `path`."""
    encoder = _Encoder()
    root = encoder.encode(obj, "obj")
    meta = json.dumps({"format": FORMAT, "version": VERSION, "root": root})
    arrays = dict(encoder.arrays)
    arrays[_META_KEY] = numpy.frombuffer(meta.encode("utf-8"), dtype=numpy.uint8)
    with atomic_write(path) as f:
        _write_npz(f, arrays)


# --------------------------------------------------------------------------------------------
# Loading


def _target_device(saved: str, map_location):
    """Where a saved array goes: `map_location`, else its saved device (cpu if cuda is missing)."""
    if map_location is not None:
        return device(map_location)
    if saved.startswith("cuda") and not cuda.is_available():
        warnings.warn(
            f"checkpoint holds {saved} arrays but CUDA is not available: loading them on cpu "
            "(pass map_location='cpu' to silence this)",
            stacklevel=4,
        )
        return device("cpu")
    return device(saved)


class _Decoder:
    def __init__(self, npz, map_location):
        self.npz = npz
        self.map_location = map_location

    def _array(self, node) -> numpy.ndarray:
        key = node["array"]
        if key not in self.npz.files:
            raise ValueError(f"corrupt checkpoint: array {key!r} is missing")
        return self.npz[key]

    def decode(self, node):
        if not isinstance(node, dict):
            return node
        kind = node.get("t")
        if kind == "dict":
            return {k: self.decode(v) for k, v in node["items"]}
        if kind in ("list", "tuple"):
            items = [self.decode(v) for v in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "tensor":
            dev = _target_device(node["device"], self.map_location)
            return tensor(self._array(node), device=dev, requires_grad=node["requires_grad"])
        if kind == "ndarray":
            dev = _target_device(node["device"], self.map_location)
            return dev.xp.asarray(self._array(node))
        if kind == "scalar":
            return self._array(node)[()]
        raise ValueError(f"corrupt checkpoint: unknown node type {kind!r}")


def load(path: str | os.PathLike | BinaryIO, map_location=None) -> Any:
    """Load what `save` wrote; Tensors go to `map_location` or their saved device.

    `path` may also be a binary file object (as torch.load's), e.g. an `io.BytesIO` of the bytes
    that rank 0 read and broadcast; messages then name its `name` attribute.
    A file that is not a readable checkpoint (empty, truncated, random bytes, another format)
    raises ValueError naming `path` and what is wrong; a missing file FileNotFoundError.
    """
    source = path
    if not isinstance(path, (str, os.PathLike)):
        path = getattr(path, "name", "<checkpoint bytes>")
    try:
        npz = numpy.load(source, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except EOFError:
        raise ValueError(f"{path} is not a tensortape checkpoint (the file is empty)") from None
    except (ValueError, OSError, zipfile.BadZipFile):
        # numpy's own message for unknown bytes suggests allow_pickle=True: never pass that on.
        raise ValueError(
            f"{path} is not a tensortape checkpoint (not an .npz archive, or a truncated one)"
        ) from None
    if not isinstance(npz, numpy.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a tensortape checkpoint (a single .npy array)")
    with npz:
        try:
            return _decode(npz, path, map_location)
        except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, KeyError) as e:
            raise ValueError(
                f"{path}: corrupt tensortape checkpoint ({type(e).__name__})"
            ) from None


def _decode(npz, path, map_location) -> Any:
    if _META_KEY not in npz.files:
        raise ValueError(f"{path} is not a tensortape checkpoint (no {_META_KEY} entry)")
    try:
        meta = json.loads(npz[_META_KEY].tobytes().decode("utf-8"))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: corrupt tensortape checkpoint (its structure entry)") from None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or meta.get("version", 0) > VERSION
    ):
        meta = meta if isinstance(meta, dict) else {}
        raise ValueError(
            f"{path}: unsupported checkpoint format {meta.get('format')!r} "
            f"version {meta.get('version')!r} (this is {FORMAT} version {VERSION})"
        )
    return _Decoder(npz, map_location).decode(meta["root"])
