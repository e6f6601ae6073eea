"""Datasets as host arrays: the embedded digits, IDX files, and MNIST / Fashion-MNIST downloads.

`digits()` and `mnist()` return `((train_images, train_labels), (test_images, test_labels))`:
float32 images in [0, 1] shaped (N, 1, H, W) and int64 labels. `mnist` reads the standard IDX files
(plain or gzip) and downloads the official ones, verified by MD5, when they are missing and a
network is there. `engine.data.load_digits` / `load_mnist` wrap these in `TensorDataset`s.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy

from .files import atomic_write

__all__ = [
    "IDXError",
    "MNIST_RESOURCES",
    "digits",
    "download_url",
    "mnist",
    "parse_idx",
    "read_idx",
    "split_indices",
]

Split = tuple[numpy.ndarray, numpy.ndarray]


# --------------------------------------------------------------------------------------------
# Splits and the embedded digits


def split_indices(labels: numpy.ndarray, test_fraction: float, seed: int) -> tuple:
    """Stratified random split: `(train_idx, test_idx)`, `test_fraction` of each class in test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = numpy.asarray(labels)
    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    perm = rng.permutation(len(labels))
    order = perm[numpy.argsort(labels[perm], kind="stable")]  # grouped by class, shuffled within
    classes, starts, counts = numpy.unique(labels[order], return_index=True, return_counts=True)
    cls = numpy.searchsorted(classes, labels[order])
    rank = numpy.arange(len(order)) - starts[cls]
    n_test = numpy.rint(counts * test_fraction).astype(numpy.int64)
    is_test = rank < n_test[cls]
    return numpy.sort(order[~is_test]), numpy.sort(order[is_test])


def digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits (1,797 images, offline) as `(train, test)` arrays.

    Images are float32 in [0, 1] shaped (N, 1, 8, 8), labels int64; the split is stratified and
    fixed by `seed`.
    """
    from sklearn.datasets import load_digits as sk_digits  # noqa: PLC0415

    bunch = sk_digits()
    images = (bunch.images / 16.0).astype(numpy.float32)[:, None, :, :]
    labels = bunch.target.astype(numpy.int64)
    train_idx, test_idx = split_indices(labels, test_fraction, seed)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)


class IDXError(ValueError):
    """A missing piece, truncation or corruption in an IDX file."""


_IDX_DTYPES = {
    0x08: numpy.dtype(">u1"),
    0x09: numpy.dtype(">i1"),
    0x0B: numpy.dtype(">i2"),
    0x0C: numpy.dtype(">i4"),
    0x0D: numpy.dtype(">f4"),
    0x0E: numpy.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(f"{path}: corrupt or truncated gzip file ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> numpy.ndarray:
    """Parse IDX bytes: magic (0, 0, dtype code, ndim), ndim big-endian uint32 sizes, then data."""
    if len(data) < 4:
        raise IDXError(f"{name}: truncated IDX file: {len(data)} bytes, no complete header")
    zero0, zero1, code, ndim = data[:4]
    if zero0 or zero1 or code not in _IDX_DTYPES:
        raise IDXError(f"{name}: bad IDX magic number 0x{data[:4].hex()}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "corrupt"
        raise IDXError(
            f"{name}: {kind} IDX file: header says shape {shape} of {dtype.name} "
            f"({expected} bytes with header) but the file has {len(data)} bytes"
        )
    array = numpy.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> numpy.ndarray:
    """Read one IDX file (plain, or gzip when the name ends in `.gz`) into a native-endian array."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Official mirrors and MD5 of the .gz files (the same list torchvision verifies against).
MNIST_RESOURCES = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion": (
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_url(url: str, dest: Path, md5: str, timeout: float = 10.0) -> None:
    """Download `url` to `dest` atomically, verifying its MD5; raises `OSError` on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with atomic_write(dest) as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        for block in iter(lambda: resp.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != md5:  # raising here discards the temp file
            raise OSError(f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}")


def _download_missing(root: Path, kind: str, missing: list[str], timeout: float) -> None:
    mirrors, md5s = MNIST_RESOURCES[kind]
    for name in missing:
        gz = f"{name}.gz"
        errors = []
        for mirror in mirrors:
            try:
                download_url(mirror + gz, root / gz, md5s[gz], timeout)
                break
            except (OSError, urllib.error.URLError) as exc:
                errors.append(f"{mirror}{gz}: {exc}")
        else:
            raise RuntimeError(
                f"could not download {gz} for {kind!r} into {root} (offline?). Tried:\n  "
                + "\n  ".join(errors)
                + f"\nPlace the official IDX files ({', '.join(_MNIST_FILES)}, plain or .gz) there."
            )


def _read_split(root: Path, images_name: str, labels_name: str) -> Split:
    images_path, labels_path = _find(root, images_name), _find(root, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != numpy.uint8:
        raise IDXError(
            f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != numpy.uint8:
        raise IDXError(
            f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    x = (images.astype(numpy.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(numpy.int64)


def mnist(
    root: str | os.PathLike,
    kind: str = "mnist",
    download: bool = True,
    timeout: float = 10.0,
) -> tuple[Split, Split]:
    """MNIST or Fashion-MNIST (`kind="fashion"`) from the IDX files in `root`: `(train, test)`.

    Images are float32 in [0, 1] shaped (N, 1, 28, 28), labels int64. Missing files are downloaded
    (MD5-verified) when `download` is true.
    """
    if kind not in MNIST_RESOURCES:
        raise ValueError(f"kind must be one of {sorted(MNIST_RESOURCES)}, got {kind!r}")
    root = Path(root)
    missing = [name for name in _MNIST_FILES if _find(root, name) is None]
    if missing and download:
        _download_missing(root, kind, missing, timeout)
    elif missing:
        raise FileNotFoundError(
            f"missing {kind} IDX files in {root}: {', '.join(missing)} (plain or .gz); "
            "pass download=True to fetch them"
        )
    return _read_split(root, *_MNIST_FILES[:2]), _read_split(root, *_MNIST_FILES[2:])
