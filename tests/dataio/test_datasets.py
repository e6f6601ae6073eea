"""dataio.datasets: IDX (MNIST) parsing, downloads and errors, the digits split; and the
`engine.data.load_digits` / `load_mnist` datasets built on them."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error

import numpy as np
import pytest
from helpers import idx_bytes, make_mnist_dir, write_idx

from dataio import datasets
from dataio.datasets import IDXError, parse_idx, read_idx, split_indices
from engine.data import load_digits, load_mnist

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

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)


def test_load_mnist_downloads_missing_files_with_checksums(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path)
    payload = {}
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
        payload[name + ".gz"] = gzip.compress(idx_bytes(arrays[name]))
    mirrors, md5s = datasets.MNIST_RESOURCES["fashion"]
    md5s = dict(md5s, **{k: hashlib.md5(v).hexdigest() for k, v in payload.items()})
    monkeypatch.setitem(datasets.MNIST_RESOURCES, "fashion", (mirrors, md5s))
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
