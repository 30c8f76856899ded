"""Measurements of exported models: the metric in ONNX Runtime and latency on the target."""

from __future__ import annotations

from .accuracy import onnx_accuracy, onnx_score
from .cache import LatencyCache
from .latency import (
    Latency,
    LatencyComparison,
    LatencyRunner,
    LocalRunner,
    RemoteRunner,
    baseline_floor,
    compare_latency,
    file_hash,
    runner_for,
    stored_floor,
)
from .metrics import Metric, metric
from .remote import AgentClient

__all__ = [
    "AgentClient",
    "Latency",
    "LatencyCache",
    "LatencyComparison",
    "LatencyRunner",
    "LocalRunner",
    "Metric",
    "RemoteRunner",
    "baseline_floor",
    "compare_latency",
    "file_hash",
    "metric",
    "onnx_accuracy",
    "onnx_score",
    "runner_for",
    "stored_floor",
]
