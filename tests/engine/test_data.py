"""Datasets, the DataLoader, the digits split and IDX (MNIST) parsing, downloads and errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error

import numpy as np
import pytest
from helpers import idx_bytes, make_mnist_dir, write_idx

import engine
from engine import data
from engine.data import (
    DataLoader,
    Dataset,
    IDXError,
    TensorDataset,
    load_digits,
    load_mnist,
    parse_idx,
    read_idx,
    split_indices,
)

# --------------------------------------------------------------------------------------------
# IDX parsing


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_every_dtype(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, array)


def test_parse_idx_known_bytes():
    raw = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9])
    np.testing.assert_array_equal(parse_idx(raw), np.array([7, 8, 9], np.uint8))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00", "no complete header"),
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([1, 0, 0x08, 1, 0, 0, 0, 1, 5]), "bad IDX magic"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "bad IDX magic"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2, 3]), "truncated IDX file"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "corrupt IDX file"),
    ],
)
def test_parse_idx_errors(raw, message):
    with pytest.raises(IDXError, match=message):
        parse_idx(raw, "crafted")


def test_truncated_file_error_names_shape_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-10])
    with pytest.raises(IDXError) as info:
        read_idx(path)
    msg = str(info.value)
    assert "truncated" in msg and "(2, 28, 28)" in msg and str(path) in msg
    assert f"{16 + 2 * 28 * 28} bytes" in msg and f"{16 + 2 * 28 * 28 - 10} bytes" in msg


def test_corrupt_and_truncated_gzip(tmp_path):
    garbage = tmp_path / "a.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(IDXError, match="gzip"):
        read_idx(garbage)
    cut = tmp_path / "b.gz"
    cut.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:-12])
    with pytest.raises(IDXError, match="gzip"):
        read_idx(cut)


# --------------------------------------------------------------------------------------------
# load_mnist


def test_load_mnist_plain_and_gz(tmp_path):
    arrays = make_mnist_dir(tmp_path, gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    train, test = load_mnist(tmp_path, download=False)
    assert len(train) == 6 and len(test) == 3
    x, y = train.tensors
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (6,) and y.dtype == np.int64
    np.testing.assert_array_equal(
        x.numpy()[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255)
    )
    np.testing.assert_array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(test.tensors[1].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert x.numpy().min() >= 0.0 and x.numpy().max() <= 1.0


def test_load_mnist_missing_without_download(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(IDXError, match="3 images but .* has 4 labels"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_swapped_files_are_rejected(tmp_path):
    arrays = make_mnist_dir(tmp_path, gz=())
    write_idx(tmp_path / "train-images-idx3-ubyte", arrays["train-labels-idx1-ubyte"])
    with pytest.raises(IDXError, match=r"expected uint8 images \(N, H, W\), got uint8 \(6,\)"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="cifar")


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve(monkeypatch, files: dict[str, bytes], seen: list):
    def urlopen(url, timeout=None):
        seen.append((url, timeout))
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError("no route to host")
        return _FakeResponse(files[name])

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)


def test_load_mnist_downloads_missing_files_with_checksums(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path)
    payload = {}
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
        payload[name + ".gz"] = gzip.compress(idx_bytes(arrays[name]))
    mirrors, md5s = data.MNIST_RESOURCES["fashion"]
    md5s = dict(md5s, **{k: hashlib.md5(v).hexdigest() for k, v in payload.items()})
    monkeypatch.setitem(data.MNIST_RESOURCES, "fashion", (mirrors, md5s))
    seen = []
    _serve(monkeypatch, payload, seen)
    train, test = load_mnist(tmp_path, kind="fashion", timeout=3)
    assert [url for url, _ in seen] == [mirrors[0] + n for n in payload]
    assert all(timeout == 3 for _, timeout in seen)
    np.testing.assert_array_equal(test.tensors[1].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"] + list(payload)
    )


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    make_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    seen = []
    _serve(monkeypatch, {"train-labels-idx1-ubyte.gz": b"tampered"}, seen)
    with pytest.raises(RuntimeError, match="checksum mismatch") as info:
        load_mnist(tmp_path)
    assert "d53e105ee54ea40749a09fcbcd1e9432" in str(info.value)
    assert len(seen) == 2  # both mirrors tried
    assert not any(p.name.startswith((".", "train-labels")) for p in tmp_path.iterdir())


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    _serve(monkeypatch, {}, [])
    with pytest.raises(
        RuntimeError, match=r"could not download train-images-idx3-ubyte.gz .*offline"
    ):
        load_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Splits and digits


def test_split_indices_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, test = split_indices(labels, 0.25, seed=0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 5, 8, 10])  # rint(n * 0.25)
    again = split_indices(labels, 0.25, seed=0)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(split_indices(labels, 0.25, seed=1)[1], test)
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(labels, 1.0, seed=0)


def test_load_digits():
    from sklearn.datasets import load_digits as sk_digits

    train, test = load_digits()
    assert (len(train), len(test)) == (1438, 359)
    x, y = train.tensors
    assert x.shape == (1438, 1, 8, 8) and x.dtype == np.float32
    assert y.dtype == np.int64
    assert x.numpy().min() == 0.0 and x.numpy().max() == 1.0
    both = np.concatenate([x.numpy(), test.tensors[0].numpy()])
    ref = sk_digits().images.astype(np.float32) / 16
    assert np.isclose(both.sum(), ref.sum())  # the split is a partition of the whole set
    assert np.abs(np.bincount(test.tensors[1].numpy()) - 36).max() <= 1
    np.testing.assert_array_equal(load_digits()[1].tensors[1].numpy(), test.tensors[1].numpy())


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
