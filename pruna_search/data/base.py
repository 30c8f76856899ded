"""The data contract every loader returns: train / calib / val splits plus shape facts.

A split is a torch ``Dataset``: built-in small sets hold tensors (``TensorDataset``); a folder of
photos is read file by file (``data.imagefolder``), and a dataset that reads files says how many
loader processes may read it (its ``workers`` attribute). Everything that walks a split goes
through ``DataSplits.batches``, so no split is ever held in memory beyond the batches in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..core.errors import DataError
from ..core.imports import keyword_settings
from ..core.runtime import batch_for

SPLITS = ("train", "calib", "val")


def workers_of(dataset: Dataset) -> int:
    """Loader processes that read ``dataset`` (0 for tensors in memory)."""
    return int(getattr(dataset, "workers", 0) or 0)


@dataclass(frozen=True)
class DataSplits:
    """A loaded data set.

    Attributes:
        name: the loader's name (``digits``, ``fashion_mnist``, ...).
        train: fine-tuning split: a Dataset of (float32 input, int64 label) examples.
        calib: calibration subset of ``train`` (int8 quantization ranges), read as validated.
        val: validation split; the metric is measured on it, batch by batch.
        input_shape: one example's shape as fed to the model, e.g. ``(1, 32, 32)``.
        num_classes: number of classes.
        options: the options the loader was called with (part of the fingerprint).
        content: a digest of the arrays themselves (part of the fingerprint), so a file
            changed in place never reuses a baseline trained on its old contents.
    """

    name: str
    train: Dataset
    calib: Dataset
    val: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)
    content: str = ""

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(
                f"data: {self.name!r} has {self.num_classes} class(es); a classifier needs at "
                "least 2 (check the labels, or the class folders under data.root)"
            )
        for split in SPLITS:
            if len(getattr(self, split)) == 0:
                raise DataError(
                    f"data.{split}: the {split} split of {self.name!r} is empty; "
                    "provide more examples or lower the split sizes"
                )

    def batches(
        self, split: str = "val", batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The split in order, as (float32 inputs, int64 labels) batches of ``batch_size``
        (default: ``batch_for(input_shape)``), read by the dataset's loader processes."""
        dataset = self._split(split)
        size = batch_size or batch_for(self.input_shape)
        if isinstance(dataset, TensorDataset):
            x, y = dataset.tensors[0], dataset.tensors[1]
            for start in range(0, len(dataset), size):
                yield _as_arrays(x[start : start + size], y[start : start + size])
            return
        loader = DataLoader(dataset, batch_size=size, num_workers=workers_of(dataset))
        for x, y in loader:
            yield _as_arrays(x, y)

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole validation split in memory (inputs exactly as fed to the model, labels):
        for small sets and tests; searches read ``batches("val")``."""
        return _concat(self.batches("val"))

    def calib_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The calibration subset in memory (``calib_size`` examples)."""
        return _concat(self.batches("calib"))

    def head(self, count: int) -> np.ndarray:
        """The first ``count`` validation inputs (fewer when the split is smaller)."""
        n = min(count, self.size("val"))
        return np.stack([np.asarray(self.val[i][0], dtype=np.float32) for i in range(n)])

    def example(self, batch: int = 2) -> torch.Tensor:
        """Real inputs from the val split (used for tracing, export and parity checks)."""
        return torch.from_numpy(self.head(batch))

    def size(self, split: str = "val") -> int:
        """Examples in ``split``. Every split is a map-style Dataset, which has a length;
        torch's ``Dataset`` type does not declare ``__len__``."""
        return len(cast(Sized, self._split(split)))

    def _split(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        return getattr(self, split)

    @property
    def fingerprint(self) -> str:
        """Stable id of this data set and its options (used in cache keys)."""
        text = json.dumps(
            {"name": self.name, "content": self.content, **self.options},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def content_digest(*arrays: np.ndarray) -> str:
    """A digest of the arrays' shapes, dtypes and bytes (about 1 GB/s)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data)
    return digest.hexdigest()


def _as_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def _concat(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*batches, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """How ``make_splits`` builds the splits.

    Attributes:
        num_classes: number of classes; None: max label + 1.
        calib_size: size of the calibration subset drawn from train (>= 1).
        seed: seed of the calibration subset.
        options: the options the loader was called with (``DataSplits.options``).
    """

    num_classes: int | None = None
    calib_size: int = 256
    seed: int = 0
    options: dict[str, Any] | None = None


def make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    **settings: Any,
) -> DataSplits:
    """Build DataSplits from arrays; ``calib`` is a seeded random subset of train.

    ``settings``: the fields of ``SplitSettings`` (``num_classes``, ``calib_size``, ``seed``,
    ``options``), as keywords.
    """
    s = keyword_settings(SplitSettings, settings, caller="make_splits")
    if s.calib_size < 1:
        raise DataError(f"data.calib_size: {s.calib_size!r} must be >= 1")
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_val = np.ascontiguousarray(x_val, dtype=np.float32)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_val = np.asarray(y_val, dtype=np.int64)
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise DataError(f"data {name!r}: inputs and labels differ in length; fix the arrays")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(
            f"data {name!r}: train examples {x_train.shape[1:]} and val examples "
            f"{x_val.shape[1:]} differ in shape; give both splits the same shape"
        )
    num_classes = s.num_classes
    if num_classes is None:
        both = np.concatenate([y_train, y_val]) if len(y_val) else y_train
        num_classes = int(both.max()) + 1 if len(both) else 0
    rng = np.random.default_rng(s.seed)
    calib_idx = np.sort(rng.permutation(len(x_train))[: min(s.calib_size, len(x_train))])
    train = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
    calib = TensorDataset(
        torch.from_numpy(x_train[calib_idx]), torch.from_numpy(y_train[calib_idx])
    )
    val = TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val))
    return DataSplits(
        name=name,
        train=train,
        calib=calib,
        val=val,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=int(num_classes),
        options=dict(s.options or {}),
        content=content_digest(x_train, y_train, x_val, y_val),
    )
