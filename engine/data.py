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
    "DistributedSampler",
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
    position inside the current epoch. `sampler` (exclusive with `shuffle`): an iterable of
    dataset indices with a length, e.g. a `DistributedSampler`, read afresh each epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device=None,
        sampler=None,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.sampler = sampler
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
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        n = len(self.dataset)
        self._epoch_start_state = self.generator.bit_generator.state
        if self.sampler is not None:
            order = numpy.fromiter(iter(self.sampler), numpy.int64, len(self.sampler))
        else:
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


class DistributedSampler:
    """The indices of one rank's shard of `dataset` (PyTorch's DistributedSampler).

    Each epoch draws one permutation, the same on every rank (seeded by `seed + epoch`: call
    `set_epoch(epoch)` before each epoch, or every epoch repeats the first order), and rank r
    takes every `num_replicas`-th index from position r. Every shard has the same length, so
    every rank runs the same number of steps and collectives: `drop_last=False` pads with the
    first indices again (a few samples count twice per epoch), `drop_last=True` drops the tail.
    For evaluation, where duplicates would bias the result, use
    `layers.parallel.distributed_evaluate`. `num_replicas` and `rank` default to the process
    group's (a world of one without it).
    """

    def __init__(
        self,
        dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        from . import distributed

        group = distributed.is_initialized()
        if num_replicas is None:
            num_replicas = distributed.get_world_size() if group else 1
        if rank is None:
            rank = distributed.get_rank() if group else 0
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank!r}, rank should be in [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = bool(shuffle), int(seed), drop_last, 0
        n = len(dataset)
        if drop_last:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        if self.num_samples == 0:
            raise ValueError(
                f"DistributedSampler: a dataset of {n} samples gives {num_replicas} ranks no "
                "sample each with drop_last=True"
            )
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = numpy.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = numpy.arange(n)
        if self.total_size > n:  # pad with the first indices (again, if the gap is large)
            order = numpy.resize(order, self.total_size)
        order = order[: self.total_size]
        return iter(order[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


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
