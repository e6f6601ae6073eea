"""Datasets and the DataLoader (engine.data); the files behind load_digits/load_mnist are tested
in tests/dataio/test_datasets.py."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.data import DataLoader, Dataset, TensorDataset

# --------------------------------------------------------------------------------------------
# TensorDataset and DataLoader


def _dataset(n=10):
    x = engine.tensor(np.arange(n * 3, dtype=np.float32).reshape(n, 3))
    y = engine.tensor(np.arange(n, dtype=np.int64))
    return TensorDataset(x, y)


def test_tensor_dataset():
    ds = _dataset(5)
    assert len(ds) == 5
    x, y = ds[2]
    np.testing.assert_array_equal(x.numpy(), [6, 7, 8])
    assert y.item() == 2
    with pytest.raises(ValueError, match=r"same first dimension.*\(5, 3\).*\(4,\)"):
        TensorDataset(ds.tensors[0], engine.tensor(np.arange(4)))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_dataset_is_abstract():
    with pytest.raises(NotImplementedError):
        len(Dataset())
    with pytest.raises(NotImplementedError):
        Dataset()[0]


def test_loader_in_order_with_last_partial_batch():
    loader = DataLoader(_dataset(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [tuple(b[0].shape) for b in batches] == [(4, 3), (4, 3), (2, 3)]
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), np.arange(10))
    x, y = batches[0]
    assert isinstance(x, engine.Tensor) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.device == "cpu"
    np.testing.assert_array_equal(x.numpy(), np.arange(12).reshape(4, 3))


def test_loader_drop_last():
    loader = DataLoader(_dataset(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b[1].numpy()) for b in loader] == [4, 4]
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_dataset(), batch_size=0)


def test_loader_batches_by_fancy_indexing(monkeypatch):
    def no_per_sample(self, index):
        raise AssertionError("TensorDataset batches must not go through __getitem__")

    monkeypatch.setattr(TensorDataset, "__getitem__", no_per_sample)
    assert sum(len(y.numpy()) for _, y in DataLoader(_dataset(), batch_size=3, shuffle=True)) == 10


def _epoch(loader):
    return np.concatenate([y.numpy() for _, y in loader])


def test_loader_shuffle_is_seeded_and_rows_stay_paired():
    a = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=7)
    b = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=7)
    first, second = _epoch(a), _epoch(a)
    np.testing.assert_array_equal(np.sort(first), np.arange(20))
    assert not np.array_equal(first, np.arange(20)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(_epoch(b), first)
    np.testing.assert_array_equal(_epoch(b), second)
    for x, y in a:
        np.testing.assert_array_equal(x.numpy()[:, 0], y.numpy() * 3)


def test_loader_without_seed_follows_engine_manual_seed():
    def epoch_after_seed(seed):
        engine.manual_seed(seed)
        return _epoch(DataLoader(_dataset(20), batch_size=5, shuffle=True))

    first = epoch_after_seed(123)
    assert not np.array_equal(first, np.arange(20))  # shuffled at all
    np.testing.assert_array_equal(epoch_after_seed(123), first)
    assert not np.array_equal(epoch_after_seed(124), first)  # the order comes from the seed


def test_loader_state_dict_resumes_between_epochs():
    ref = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3)
    _epoch(ref)
    state = ref.state_dict()
    expected = [_epoch(ref), _epoch(ref)]
    resumed = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=99)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(_epoch(resumed), expected[0])
    np.testing.assert_array_equal(_epoch(resumed), expected[1])


def test_loader_state_dict_resumes_mid_epoch():
    ref = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3)
    _epoch(ref)
    uninterrupted = [_epoch(ref), _epoch(ref)]

    run = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3)
    _epoch(run)
    it = iter(run)
    seen = [next(it)[1].numpy(), next(it)[1].numpy()]
    state = run.state_dict()
    assert state["batches_done"] == 2

    resumed = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    rest = _epoch(resumed)
    np.testing.assert_array_equal(np.concatenate(seen + [rest]), uninterrupted[0])
    np.testing.assert_array_equal(_epoch(resumed), uninterrupted[1])


def test_loader_generic_dataset_stacks_items():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((2, 2), i, np.float32), i * i

    x, y = next(iter(DataLoader(Squares(), batch_size=3)))
    assert x.shape == (3, 2, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), [0, 1, 4])
    np.testing.assert_array_equal(x.numpy()[:, 0, 0], [0, 1, 2])


def test_loader_moves_batches_to_device():
    loader = DataLoader(_dataset(), batch_size=4, device="cpu")
    x, _ = next(iter(loader))
    assert x.device == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        DataLoader(_dataset(), device="tpu")


def test_loader_batches_land_on_the_device(device):
    ds = _dataset(10)
    for source in ("cpu", device):
        on_source = TensorDataset(*(t.to(source) for t in ds.tensors))
        loader = DataLoader(on_source, batch_size=4, shuffle=True, seed=1, device=device)
        batches = list(loader)
        assert all(x.device == device and y.device == device for x, y in batches)
        ys = np.concatenate([y.numpy() for _, y in batches])
        np.testing.assert_array_equal(
            ys, _epoch(DataLoader(ds, batch_size=4, shuffle=True, seed=1))
        )
        x, y = batches[0]
        np.testing.assert_array_equal(x.numpy()[:, 0], y.numpy() * 3)
