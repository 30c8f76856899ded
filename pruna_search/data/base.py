"""The data contract every loader returns: train / calib / val splits plus shape facts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..core.errors import DataError


@dataclass(frozen=True)
class DataSplits:
    """A loaded data set.

    Attributes:
        name: the loader's name (``digits``, ``fashion_mnist``, ...).
        train: fine-tuning split (a TensorDataset of float32 inputs and int64 labels).
        calib: calibration subset of ``train`` (int8 quantization ranges, BN recalibration).
        val: validation split; accuracy is measured on it.
        input_shape: one example's shape as fed to the model, e.g. ``(1, 32, 32)``.
        num_classes: number of classes.
        options: the options the loader was called with (part of the fingerprint).
        content: a digest of the arrays themselves (part of the fingerprint), so a file
            changed in place never reuses a baseline trained on its old contents.
    """

    name: str
    train: TensorDataset
    calib: TensorDataset
    val: TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)
    content: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "calib", "val"):
            if len(getattr(self, split)) == 0:
                raise DataError(
                    f"data.{split}: the {split} split of {self.name!r} is empty; "
                    "provide more examples or lower the split sizes"
                )

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Validation inputs exactly as fed to the model (float32) and labels (int64)."""
        return _arrays(self.val)

    def calib_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return _arrays(self.calib)

    def example(self, batch: int = 2) -> torch.Tensor:
        """Real inputs from the val split (used for tracing, export and parity checks)."""
        x, _ = self.val.tensors
        return x[:batch].clone()

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
        digest.update(np.ascontiguousarray(array).view(np.uint8).reshape(-1))
    return digest.hexdigest()


def _arrays(dataset: TensorDataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = dataset.tensors
    return (x.numpy().astype(np.float32, copy=False), y.numpy().astype(np.int64, copy=False))


def make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    num_classes: int | None = None,
    calib_size: int = 256,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> DataSplits:
    """Build DataSplits from arrays; ``calib`` is a seeded random subset of train."""
    if calib_size < 1:
        raise DataError(f"data.calib_size: {calib_size!r} must be >= 1")
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
    if num_classes is None:
        both = np.concatenate([y_train, y_val]) if len(y_val) else y_train
        num_classes = int(both.max()) + 1 if len(both) else 0
    rng = np.random.default_rng(seed)
    calib_idx = np.sort(rng.permutation(len(x_train))[: min(calib_size, len(x_train))])
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
        options=dict(options or {}),
        content=content_digest(x_train, y_train, x_val, y_val),
    )
