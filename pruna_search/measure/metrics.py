"""What a model is scored by (``objective.metric``): top-1, top-5, or a user's function.

A metric takes the logits of the whole validation split and its labels and returns a number,
higher is better; the accuracy budget (``objective.max_accuracy_drop``) is on that number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.errors import ConfigError, MeasurementError
from ..core.imports import import_object

BUILT_IN = ("top1", "top5")
FIELD = "objective.metric"


def top_k(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of examples whose label is among the ``k`` largest logits."""
    if k == 1:
        return float(np.mean(logits.argmax(axis=1) == labels))
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(np.mean((best == labels[:, None]).any(axis=1)))


@dataclass(frozen=True)
class Metric:
    """A named score of (logits, labels), higher is better."""

    name: str
    function: Callable[[np.ndarray, np.ndarray], float]
    k: int | None = None  # top-k: the number of classes it needs

    def check(self, num_classes: int) -> None:
        """A top-k metric needs more than k classes to mean anything."""
        if self.k is not None and num_classes <= self.k:
            raise ConfigError(
                f"{FIELD}: {self.name} needs more than {self.k} classes but the data has "
                f"{num_classes}; use top1"
            )

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> float:
        try:
            value = self.function(logits, labels)
            value = float(value)
        except Exception as exc:
            raise MeasurementError(
                f"{FIELD}: {self.name!r} failed on logits {logits.shape} and labels "
                f"{labels.shape} ({type(exc).__name__}: {exc}); fix the function"
            ) from None
        if not math.isfinite(value):
            raise MeasurementError(
                f"{FIELD}: {self.name!r} returned {value!r}; it must return a finite number"
            )
        return value


TOP1 = Metric("top1", lambda logits, labels: top_k(logits, labels, 1))


def metric(spec: str = "top1") -> Metric:
    """``top1``, ``top5`` or ``package.module:function`` (a function of (logits, labels))."""
    if spec == "top1":
        return TOP1
    if spec == "top5":
        return Metric("top5", lambda logits, labels: top_k(logits, labels, 5), k=5)
    if not isinstance(spec, str) or (":" not in spec and "." not in spec):
        raise ConfigError(
            f"{FIELD}: {spec!r} is unknown; use top1, top5 or 'package.module:function' "
            "(a function of logits and labels returning a number, higher is better)"
        )
    function = import_object(spec, field=FIELD, kind="function", error=ConfigError)
    if not callable(function):
        raise ConfigError(f"{FIELD}: {spec!r} is a {type(function).__name__}, not a function")
    return Metric(spec, function)
