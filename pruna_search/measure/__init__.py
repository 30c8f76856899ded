"""Measurements of exported models: accuracy in ONNX Runtime and latency on the target."""

from __future__ import annotations

from . import hardware
from .accuracy import onnx_accuracy
from .cache import LatencyCache
from .latency import Latency, LatencyComparison, compare_latency, file_hash

__all__ = [
    "hardware",
    "Latency",
    "LatencyCache",
    "LatencyComparison",
    "compare_latency",
    "file_hash",
    "onnx_accuracy",
]
