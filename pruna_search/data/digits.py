"""scikit-learn's bundled digits (1797 images, 8x8), upsampled so models have real work."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DataError
from .base import DataSplits, make_splits


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) float images to (N, C, size, size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(
        torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False
    )
    return out.numpy()


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and val, with every class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_digits(
    *, size: int = 32, val_fraction: float = 0.2, calib_size: int = 256, seed: int = 0
) -> DataSplits:
    """Digits as (1, size, size) float32 images, standardized with the train split's statistics.

    Args:
        size: side of the resized image. 32 makes a ResNet-20 cost about 1 ms per image on one
            CPU thread, so latency differences are measurable.
        val_fraction: stratified fraction held out for validation.
        calib_size: size of the calibration subset drawn from train.
        seed: split seed.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if not isinstance(size, int) or size < 8:
        raise DataError(f"data.size: {size!r} must be an integer >= 8")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"data.val_fraction: {val_fraction!r} must be between 0 and 1")
    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    images = resize(images, size)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std()) or 1.0
    images = (images - mean) / std
    return make_splits(
        "digits",
        images[train_idx],
        labels[train_idx],
        images[val_idx],
        labels[val_idx],
        num_classes=10,
        calib_size=calib_size,
        seed=seed,
        options={
            "size": size,
            "val_fraction": val_fraction,
            "calib_size": calib_size,
            "seed": seed,
        },
    )
