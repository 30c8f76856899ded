"""Measurements of exported models: accuracy in ONNX Runtime and latency on the target."""

from __future__ import annotations

from .accuracy import onnx_accuracy
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
    forget_slow_streak,
    runner_for,
    stored_floor,
)
from .remote import AgentClient

__all__ = [
    "AgentClient",
    "Latency",
    "LatencyCache",
    "LatencyComparison",
    "LatencyRunner",
    "LocalRunner",
    "RemoteRunner",
    "baseline_floor",
    "compare_latency",
    "file_hash",
    "forget_slow_streak",
    "onnx_accuracy",
    "runner_for",
    "stored_floor",
]
