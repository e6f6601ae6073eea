"""Datasets and the DataLoader (torch.utils.data): `Dataset`, `TensorDataset`, `DataLoader`, and the
digits and MNIST as `TensorDataset`s (`load_digits`, `load_mnist`; the files are dataio.datasets').

A `TensorDataset` is batched by fancy-indexing its arrays (one gather per field per batch, no
per-sample Python loop); any other `Dataset` falls back to stacking its items. The loader shuffles
with its own NumPy generator whose state `state_dict()` exposes, so a resumed run draws the same
batches as an uninterrupted one (mid-epoch too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy

from dataio import datasets

from .device import device as _device
from .random import generator as _engine_generator
from .tensor import Tensor, as_tensor

__all__ = [
    "Dataset",
    "TensorDataset",
    "DataLoader",
    "load_digits",
    "load_mnist",
]


# --------------------------------------------------------------------------------------------
# Datasets


class Dataset:
    """A map-style dataset: subclasses implement `__len__` and `__getitem__(i)`."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of `tensors`, which must all have the same first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        tensors = tuple(as_tensor(t) for t in tensors)  # Tensors and arrays as they are
        shapes = [tuple(t.shape) for t in tensors]
        if any(len(s) == 0 for s in shapes):
            raise ValueError(
                f"TensorDataset tensors must have a first dimension, got shapes {shapes}"
            )
        if len({s[0] for s in shapes}) != 1:
            raise ValueError(
                f"TensorDataset tensors must have the same first dimension, got shapes {shapes}"
            )
        self.tensors = tensors

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return f"TensorDataset(len={len(self)}, shapes=[{shapes}])"


# --------------------------------------------------------------------------------------------
# DataLoader


class DataLoader:
    """Iterate over `dataset` in batches of tuples of Tensors on `device`.

    `shuffle=True` draws a new permutation each epoch from the loader's own generator, seeded by
    `seed`, or from the engine's CPU generator when `seed` is None (so `engine.manual_seed` makes
    it reproducible). `state_dict()` / `load_state_dict()` save and restore that generator and the
    position inside the current epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device=None,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = None if device is None else _device(device)
        if seed is None:
            seed = int(_engine_generator().integers(2**63))
        self.generator = numpy.random.Generator(numpy.random.PCG64(seed))
        self._epoch_start_state = self.generator.bit_generator.state
        self._done = 0  # batches yielded in the current epoch
        self._skip = 0  # batches to skip on the next epoch (after load_state_dict)
        self._in_epoch = False

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        n = len(self.dataset)
        self._epoch_start_state = self.generator.bit_generator.state
        order = self.generator.permutation(n) if self.shuffle else numpy.arange(n)
        skip, self._skip = self._skip, 0
        self._done, self._in_epoch = skip, True
        for b in range(skip, len(self)):
            batch = self._fetch(order[b * self.batch_size : (b + 1) * self.batch_size])
            self._done = b + 1
            yield batch
        self._in_epoch = False

    def _fetch(self, indices: numpy.ndarray) -> tuple:
        if isinstance(self.dataset, TensorDataset):
            return tuple(self._gather(t, indices) for t in self.dataset.tensors)
        return _collate([self.dataset[int(i)] for i in indices], self.device)

    def _gather(self, t: Tensor, indices: numpy.ndarray) -> Tensor:
        batch = t.array[t.device.xp.asarray(indices)]
        return as_tensor(batch, device=self.device or t.device)

    def state_dict(self) -> dict:
        """The generator state and position: JSON-able, for `engine.save` checkpoints."""
        midway = self._in_epoch and 0 < self._done < len(self)
        if midway:
            return {"generator": self._epoch_start_state, "batches_done": self._done}
        return {"generator": self.generator.bit_generator.state, "batches_done": 0}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`: the next epoch replays the saved one from where it stopped."""
        gen_state = state["generator"]
        if gen_state.get("bit_generator") != "PCG64":
            raise ValueError(f"DataLoader state needs a PCG64 generator, got {gen_state!r}")
        self.generator.bit_generator.state = gen_state
        self._skip = int(state.get("batches_done", 0))
        self._in_epoch = False


def _collate(items: list, device=None) -> tuple:
    """Stack samples (each a tuple of Tensors, arrays or numbers) into a tuple of Tensors."""
    if not isinstance(items[0], (tuple, list)):
        items = [(item,) for item in items]
    return tuple(_stack([item[k] for item in items], device) for k in range(len(items[0])))


def _stack(column: list, device=None) -> Tensor:
    if isinstance(column[0], Tensor):
        stacked = column[0].device.xp.stack([c.array for c in column])
        return as_tensor(stacked, device=device or column[0].device)
    return as_tensor(numpy.stack([numpy.asarray(c) for c in column]), device=device)


# --------------------------------------------------------------------------------------------
# The embedded digits and MNIST


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's bundled 8x8 digits (1,797 images, offline) as `(train, test)` datasets.

    Images are float32 in [0, 1] shaped (N, 1, 8, 8), labels int64; the split is stratified and
    fixed by `seed`.
    """
    train, test = datasets.digits(test_fraction, seed)
    return TensorDataset(*train), TensorDataset(*test)


def load_mnist(
    root: str | os.PathLike,
    kind: str = "mnist",
    download: bool = True,
    timeout: float = 10.0,
) -> tuple[TensorDataset, TensorDataset]:
    """MNIST or Fashion-MNIST (`kind="fashion"`) from the IDX files in `root`: `(train, test)`.

    Images are float32 in [0, 1] shaped (N, 1, 28, 28), labels int64. Missing files are downloaded
    (MD5-verified) when `download` is true.
    """
    train, test = datasets.mnist(root, kind, download, timeout)
    return TensorDataset(*train), TensorDataset(*test)
