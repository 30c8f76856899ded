"""The metric of an exported ONNX model, measured in ONNX Runtime batch by batch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core import runtime
from ..core.errors import MeasurementError
from .metrics import TOP1, Metric

Batches = Iterable[tuple[np.ndarray, np.ndarray]]


def onnx_score(
    path: str | Path, batches: Batches, metric: Metric = TOP1, *, threads: int | None = None
) -> float:
    """``metric`` of the model at ``path`` on the (inputs, labels) ``batches`` (a stream: only
    the logits are kept). The score does not depend on threads, so all cores are used unless
    ``threads`` says otherwise."""
    try:
        sess = runtime.session(path, threads=threads or runtime.all_threads())
    except Exception as exc:
        raise MeasurementError(
            f"accuracy: ONNX Runtime cannot load {str(path)!r} ({exc})"
        ) from exc
    logits, labels = [], []
    for x, y in batches:
        logits.append(runtime.run(sess, x))
        labels.append(np.asarray(y, dtype=np.int64))
    if not labels:
        raise MeasurementError("accuracy: the validation split is empty; give data a val split")
    return metric(np.concatenate(logits), np.concatenate(labels))


def array_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> Batches:
    return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size))


def onnx_accuracy(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 256,
    threads: int | None = None,
) -> float:
    """Top-1 accuracy of the model at ``path`` on arrays ``x`` and labels ``y``."""
    if len(x) == 0:
        raise MeasurementError("accuracy: the validation split is empty; give data a val split")
    return onnx_score(path, array_batches(x, y, batch_size), TOP1, threads=threads)
