"""Top-1 accuracy of an exported ONNX model, measured in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import runtime
from ..core.errors import MeasurementError


def onnx_accuracy(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 256,
    threads: int | None = None,
) -> float:
    """Fraction of ``x`` whose arg-max logit equals ``y`` (accuracy does not depend on threads,
    so all cores are used unless ``threads`` says otherwise)."""
    if len(x) == 0:
        raise MeasurementError("accuracy: the validation split is empty; give data a val split")
    try:
        sess = runtime.session(path, threads=threads or runtime.all_threads())
    except Exception as exc:
        raise MeasurementError(
            f"accuracy: ONNX Runtime cannot load {str(path)!r} ({exc})"
        ) from exc
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = runtime.run(sess, x[start : start + batch_size])
        correct += int((logits.argmax(axis=1) == y[start : start + batch_size]).sum())
    return correct / len(x)
