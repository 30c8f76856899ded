"""Seeded, class-balanced subsets of a split (``data.train_subset``, ``data.val_subset``)."""

from __future__ import annotations

import numpy as np

from ..core.errors import DataError


def subset_size(value: object, available: int, field: str) -> int | None:
    """How many examples ``value`` asks for: a count (an integer >= 1) or a fraction in (0, 1]
    of ``available``; None keeps the whole split."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DataError(
            f"data.{field}: {value!r} must be a number of images (e.g. 5000) or a fraction "
            "in (0, 1] (e.g. 0.1); null keeps the whole split"
        )
    if isinstance(value, float) and value <= 1.0:
        return max(1, round(value * available))
    if float(value) != int(value):
        raise DataError(
            f"data.{field}: {value!r} is neither a whole number of images nor a fraction <= 1"
        )
    if int(value) > available:
        raise DataError(
            f"data.{field}: {int(value)} but the split has {available} images; give at most "
            f"{available}, or a fraction such as 0.5"
        )
    return int(value)


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` examples, as many per class as the classes allow (counts differ
    by at most one between classes that have enough), drawn at random with ``seed``."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    pools = {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: 0 for c in pools}
    left = size
    while left > 0:
        open_ = [c for c in pools if quota[c] < len(pools[c])]
        share = max(1, left // len(open_))
        # classes in a seeded order, so the one-extra images go to different classes per seed
        for c in rng.permutation(open_):
            take = min(share, len(pools[int(c)]) - quota[int(c)], left)
            quota[int(c)] += take
            left -= take
            if left == 0:
                break
    return np.sort(np.concatenate([pools[c][: quota[c]] for c in pools]))


def per_class(labels: np.ndarray) -> dict[int, int]:
    """Examples per class label."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}
