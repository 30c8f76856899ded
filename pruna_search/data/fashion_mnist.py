"""Fashion-MNIST from the four standard IDX ``*-ubyte.gz`` files, read with numpy only."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .base import DataSplits, make_splits
from .digits import resize

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ENV_ROOT = "PRUNA_SEARCH_FASHION_MNIST"
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MEAN = 0.2860
STD = 0.3530
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_FIX = (
    "run 'apt-get install dataset-fashion-mnist' or set data.root to the folder holding "
    "the four *-ubyte.gz files"
)


def default_root() -> str:
    """``$PRUNA_SEARCH_FASHION_MNIST`` when set, else where Debian's package installs the files."""
    return os.environ.get(ENV_ROOT) or DEFAULT_ROOT


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(
        f"data.root: {str(path)!r} is corrupt ({why}); re-download it or reinstall "
        "'dataset-fashion-mnist' (apt-get install --reinstall dataset-fashion-mnist)"
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file as uint8: (n, rows, cols) for images (magic 2051), (n,) for labels (2049)."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"cannot decompress: {exc}") from None
    ndim = 3 if magic == _IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"{len(raw)} bytes, shorter than the IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"magic number {found}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise _corrupt(path, f"{len(raw) - header} data bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _subset(n: int, size: int | None, seed: int, field: str) -> np.ndarray | None:
    """Sorted seeded random indices of ``size`` out of ``n`` (None: keep everything)."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"data.{field}: {size!r} must be a positive integer or null (all)")
    if size >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def load_fashion_mnist(
    *,
    root: str | None = None,
    size: int = 28,
    train_size: int | None = None,
    val_size: int | None = None,
    calib_size: int = 256,
    seed: int = 0,
) -> DataSplits:
    """Fashion-MNIST as (1, size, size) float32 images standardized with mean 0.2860, std 0.3530.

    Args:
        root: folder holding the four ``*-ubyte.gz`` files; defaults to
            ``$PRUNA_SEARCH_FASHION_MNIST`` or ``/usr/share/datasets/fashion-mnist``
            (Debian's ``dataset-fashion-mnist`` package).
        size: side of the (bilinearly) resized image; 28 keeps the originals.
        train_size: seeded random subset of the 60000 training images (None: all).
        val_size: seeded random subset of the 10000 test images used as val (None: all).
        calib_size: size of the calibration subset drawn from train.
        seed: subset seed.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DataError(f"data.size: {size!r} must be an integer >= 8")
    folder = _folder(root)
    x_train, y_train = _read_split(folder, "train")
    x_val, y_val = _read_split(folder, "t10k")

    train_idx = _subset(len(x_train), train_size, seed, "train_size")
    val_idx = _subset(len(x_val), val_size, seed + 1, "val_size")
    if train_idx is not None:
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    if val_idx is not None:
        x_val, y_val = x_val[val_idx], y_val[val_idx]

    return make_splits(
        "fashion_mnist",
        _prepare(x_train, size),
        y_train,
        _prepare(x_val, size),
        y_val,
        num_classes=10,
        calib_size=calib_size,
        seed=seed,
        options={
            "root": str(folder),
            "size": size,
            "train_size": train_size,
            "val_size": val_size,
            "calib_size": calib_size,
            "seed": seed,
        },
    )


def _folder(root: str | None) -> Path:
    """The folder holding the four files (``root``, else ``default_root()``), checked."""
    folder = Path(root if root is not None else default_root()).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"data.root: {str(folder)!r} is not a folder; {_FIX}")
    for name in FILES:
        if not (folder / name).is_file():
            raise DataError(f"data.root: {str(folder)!r} has no {name}; {_FIX}")
    return folder


def _read_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``prefix`` (``train`` or ``t10k``), checked."""
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", _IMAGES_MAGIC)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", _LABELS_MAGIC)
    if len(images) != len(labels):
        raise _corrupt(
            folder / f"{prefix}-labels-idx1-ubyte.gz",
            f"{len(labels)} labels for {len(images)} images",
        )
    if len(labels) and int(labels.max()) > 9:
        raise _corrupt(folder / f"{prefix}-labels-idx1-ubyte.gz", f"label {int(labels.max())} > 9")
    return images, labels


def _prepare(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W) images as standardized float32 (N, 1, size, size)."""
    out = images.astype(np.float32)[:, None, :, :]
    out *= 1.0 / 255.0
    out = resize(out, size)
    return (out - MEAN) / STD
